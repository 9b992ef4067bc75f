//! OCI layers and image layout (DESIGN §4).
