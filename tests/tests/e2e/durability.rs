//! What the server acknowledged survives `kill -9`, on every dialect.

use automerge::Automerge;
use automerge::sync;
use jemput_tests::{RawPeer, TestDatabase, TestServer};

use crate::JEMPUT;
use crate::ws_protocol::{doc_with, get, new_document_id, officer_url, put};

#[tokio::test]
async fn acknowledged_changes_survive_sigkill() {
    for database in TestDatabase::every("durability").await {
        let dialect = database.dialect();
        let mut server = TestServer::start(JEMPUT, database).await;
        let mut ids = Vec::new();
        let url = officer_url(&server, "penulis").await;
        let reader_url = officer_url(&server, "pembaca").await;
        let mut peer = RawPeer::joined(&url, "peer-writer", Some("s-writer")).await;
        let mut heads = Vec::new();
        for i in 0..20 {
            let id = new_document_id();
            let mut doc = doc_with("i", &i.to_string());
            put(&mut doc, "status", "draft");
            // Converged: the server has told us it holds our heads.
            peer.sync_document(id, &mut doc, &mut sync::State::new())
                .await;
            ids.push(id);
            heads.push(doc.get_heads());
        }
        server.kill().await;
        server.restart().await;
        let mut reader = RawPeer::joined(&reader_url, "peer-reader", None).await;
        for (i, (id, expected)) in ids.iter().zip(&heads).enumerate() {
            let mut copy = Automerge::new();
            reader
                .sync_document(*id, &mut copy, &mut sync::State::new())
                .await;
            assert_eq!(
                &copy.get_heads(),
                expected,
                "{dialect}: document {i} lost changes"
            );
            assert_eq!(get(&copy, "i"), Some(i.to_string()));
        }
    }
}
