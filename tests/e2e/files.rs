//! File API end to end (filled in next).
