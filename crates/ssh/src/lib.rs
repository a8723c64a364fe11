//! SSH transports for rscp: the native russh client, the `-S program` transport
//! and `rscpd`'s server. Empty until the transport issue lands; russh types must
//! never leave this crate.
