//! A Jenkins builder (placeholder until the implementation lands).
