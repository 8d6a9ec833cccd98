//! Private files: the data directory, the database and the admin socket
//! are the owner's alone from the moment they exist.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::helpers::TestApp;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_dir_database_and_admin_socket_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let app = TestApp::spawn_in(
        dir,
        &format!("[store]\npath = \"{}\"\n", data.join("herald.db").display()),
    )
    .await;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("herald.db")), 0o600, "database");
    let socket = data.join("herald.sock");
    assert!(
        std::fs::metadata(&socket)
            .expect("socket")
            .file_type()
            .is_socket()
    );
    assert_eq!(mode(&socket), 0o600, "admin socket");
    assert_eq!(mode(&data.join("seal.key")), 0o600, "OTP seal key");
    // Nothing is left behind from binding it privately, and nothing in
    // the directory is open to others (whatever else comes to live there).
    for entry in std::fs::read_dir(&data).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        assert!(!name.starts_with(".adm"), "staging left behind: {name}");
        assert_eq!(mode(&path) & 0o077, 0, "{name} is open to others");
    }
    // The admin socket works.
    app.create_key("private", "send").await;
}

#[tokio::test]
async fn an_existing_database_readable_by_others_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    std::fs::write(&db, b"").expect("create");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = herald::store::EmbeddedStore::open(&db, 8 << 20).expect("open");
    assert_eq!(mode(&db), 0o600);
    herald::store::Store::close(&store).await;
}

#[tokio::test]
async fn the_gateway_refuses_to_start_when_its_admin_socket_cannot_be_set_up_privately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    // Something that is not a socket occupies the socket's path.
    let occupied = dir.path().join("herald.sock");
    std::fs::create_dir(&occupied).expect("dir");
    std::fs::write(occupied.join("keep"), b"x").expect("file");
    let config = crate::helpers::test_config(&db, "");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = match herald::server::Gateway::start(config, listener).await {
        Ok(_) => panic!("started without a private admin socket"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("admin socket"), "{err}");
    // The store was closed again: a fixed configuration starts.
    std::fs::remove_dir_all(&occupied).expect("clear");
    let _app = TestApp::spawn_in(dir, "").await;
}
