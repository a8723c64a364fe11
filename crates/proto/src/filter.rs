//! stub
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameFilter {
    patterns: Vec<Vec<u8>>,
}
impl NameFilter {
    pub fn from_request(p: &[u8]) -> Result<NameFilter, String> {
        Ok(NameFilter {
            patterns: vec![p.to_vec()],
        })
    }
    pub fn matches(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| p == name)
    }
}
