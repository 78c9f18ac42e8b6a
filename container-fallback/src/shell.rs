//! How a session's shell state crosses into a container command and back.
