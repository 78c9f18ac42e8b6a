//! Code interpreter and exec end to end.
