//! Folders and files that hold personal data or secrets are the owner's alone whatever the umask:
//! folders this program creates are 0700, such files 0600. A folder that exists already keeps
//! its mode (a deployment may give a web server's group read access on purpose).

use std::path::Path;

/// Creates `path` (and missing parents) as 0700 folders; an existing folder is left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path)
}

/// Makes `path` readable and writable by its owner only (0600).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
