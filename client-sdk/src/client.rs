//! The domain API a field app calls: capture applications and visits, edit, submit, list.
//!
//! Every write loads the document, changes it with the device's enrolled actor id (never a
//! random one: the server refuses changes by actors bound to nobody else as forged), and
//! stores the new changes together with `note_local_change` in one SQLite transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::transaction::{Transactable, Transaction as AmTransaction};
use automerge::{Automerge, AutomergeError, ObjType, ROOT, ReadDoc, ScalarValue};
use jemput_domain::schema::{APPLICATION, VISIT};
use jemput_domain::{
    ApplicationStatus, ApplicationView, FieldValue, Kk, Nik, RegionCode, RegionLevel, Role,
    ServiceCode, Sex, TrackingCode, jakarta_today,
};
use jemput_sync_protocol::DocumentId;
use rand::RngCore;
use tokio::sync::Mutex;

use crate::store::{DocumentSummary, Enrolment, Store, StoreError};

/// Why a domain operation failed. Messages are for the officer (Bahasa Indonesia).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Automerge failed.
    #[error("dokumen: {0}")]
    Automerge(Box<AutomergeError>),
    /// No such document on this device.
    #[error("dokumen {0} tidak ada di perangkat ini")]
    NotFound(DocumentId),
    /// The region is not a village, or not in the officer's regions.
    #[error("wilayah {0} bukan desa/kelurahan di wilayah tugas petugas")]
    RegionNotAssigned(String),
    /// The document is not an application (or does not read as one).
    #[error("dokumen bukan permohonan yang sah: {0}")]
    NotAnApplication(String),
    /// The status change is not one an officer may make.
    #[error("status {from} tidak dapat diajukan")]
    CannotSubmit {
        /// The current status.
        from: ApplicationStatus,
    },
    /// Service-specific fields are missing or invalid.
    #[error("isian layanan tidak lengkap/tidak sah: {0}")]
    Fields(String),
}

impl From<AutomergeError> for ClientError {
    fn from(error: AutomergeError) -> Self {
        Self::Automerge(Box::new(error))
    }
}

/// The applicant of a new application. The NIK is parsed; the rest is as the officer wrote it.
#[derive(Clone)]
pub struct Applicant {
    /// The applicant's NIK (required).
    pub nik: Nik,
    /// Family card number.
    pub kk: Option<Kk>,
    /// Full name.
    pub name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<time::Date>,
    /// Sex.
    pub sex: Option<Sex>,
    /// Phone number.
    pub phone: Option<String>,
    /// Street address.
    pub address: Option<String>,
}

impl std::fmt::Debug for Applicant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applicant")
            .field("nik", &self.nik)
            .field("kk", &self.kk)
            .finish_non_exhaustive()
    }
}

/// A new application as captured in the field.
#[derive(Debug, Clone)]
pub struct NewApplication {
    /// The service applied for.
    pub service: ServiceCode,
    /// The village (desa/kelurahan) where it is taken; must lie in the officer's regions.
    pub village: RegionCode,
    /// Who applies.
    pub applicant: Applicant,
    /// Service-specific fields.
    pub fields: BTreeMap<String, FieldValue>,
    /// Lawful basis of the consent, e.g. `consent` (persetujuan).
    pub consent_basis: Option<String>,
    /// The visit document the application was taken during.
    pub visit: Option<DocumentId>,
}

/// A new field visit.
#[derive(Debug, Clone)]
pub struct NewVisit {
    /// The village visited; must lie in the officer's regions.
    pub village: RegionCode,
    /// Why (`home_visit`, `village_hall`, `school`, ...).
    pub purpose: Option<String>,
    /// Notes.
    pub notes: Option<String>,
}

/// A created application: its document id and the code handed to the citizen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedApplication {
    /// The document.
    pub id: DocumentId,
    /// The tracking code.
    pub tracking_code: TrackingCode,
}

/// The SDK's entry point: a store plus the enrolment it works for.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) store: Store,
    /// Serialises writes and the apply step of sync on this device.
    pub(crate) lock: Arc<Mutex<()>>,
}

/// Milliseconds since the epoch, from the device clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Client {
    /// Opens the store at `path` (created and migrated if needed).
    pub async fn open(path: &Path) -> Result<Self, ClientError> {
        Ok(Self::with_store(Store::open(path).await?))
    }

    /// Wraps an open store.
    pub fn with_store(store: Store) -> Self {
        Self {
            store,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Lists the documents on the device.
    pub async fn list(&self) -> Result<Vec<DocumentSummary>, ClientError> {
        Ok(self.store.list().await?)
    }

    /// Reads an application.
    pub async fn application(&self, id: DocumentId) -> Result<ApplicationView, ClientError> {
        let mut tx = self.store.begin().await?;
        let loaded = Store::load(&mut tx, id)
            .await?
            .ok_or(ClientError::NotFound(id))?;
        ApplicationView::from_doc(&loaded.doc)
            .map_err(|e| ClientError::NotAnApplication(e.to_string()))
    }

    /// A copy of a stored document.
    pub async fn document(&self, id: DocumentId) -> Result<Automerge, ClientError> {
        let mut tx = self.store.begin().await?;
        Ok(Store::load(&mut tx, id)
            .await?
            .ok_or(ClientError::NotFound(id))?
            .doc)
    }

    fn check_village(e: &Enrolment, village: RegionCode) -> Result<RegionCode, ClientError> {
        let not = || ClientError::RegionNotAssigned(village.as_str().to_owned());
        if village.level() != RegionLevel::Village {
            return Err(not());
        }
        let assigned = e
            .regions
            .iter()
            .filter_map(|r| RegionCode::parse(r).ok())
            .any(|r| village.is_within(&r));
        if !assigned {
            return Err(not());
        }
        village.district().ok_or_else(not)
    }

    /// Captures a new application (status `draft`) offline, with a fresh tracking code.
    pub async fn create_application(
        &self,
        new: NewApplication,
    ) -> Result<CreatedApplication, ClientError> {
        let e = self.store.require_enrolment().await?;
        let district = Self::check_village(&e, new.village)?;
        let now = now_ms();
        let today = jakarta_today(now / 1000);
        let issues = new.service.service().check_fields(&new.fields, today);
        if !issues.is_empty() {
            let names: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
            return Err(ClientError::Fields(names.join(", ")));
        }
        let mut rng = rand::rng();
        let tracking_code = TrackingCode::generate(&new.village, &mut rng)
            .map_err(|_| ClientError::RegionNotAssigned(new.village.as_str().to_owned()))?;
        let id = new_document_id(&mut rng);
        let mut doc = Automerge::new().with_actor(e.write_actor()?.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", APPLICATION)?;
        tx.put(ROOT, "trackingCode", tracking_code.as_str())?;
        tx.put(ROOT, "service", new.service.as_str())?;
        put_region(&mut tx, district, new.village)?;
        let a = tx.put_object(ROOT, "applicant", ObjType::Map)?;
        tx.put(&a, "nik", new.applicant.nik.expose())?;
        if let Some(kk) = &new.applicant.kk {
            tx.put(&a, "kk", kk.expose())?;
        }
        tx.put(&a, "name", new.applicant.name.as_str())?;
        if let Some(d) = new.applicant.birth_date {
            tx.put(
                &a,
                "birthDate",
                format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            )?;
        }
        if let Some(sex) = new.applicant.sex {
            tx.put(&a, "sex", sex.as_str())?;
        }
        if let Some(p) = &new.applicant.phone {
            tx.put(&a, "phone", p.as_str())?;
        }
        if let Some(addr) = &new.applicant.address {
            tx.put(&a, "address", addr.as_str())?;
        }
        let f = tx.put_object(ROOT, "fields", ObjType::Map)?;
        for (name, value) in &new.fields {
            put_field(&mut tx, &f, name, value)?;
        }
        tx.put_object(ROOT, "attachments", ObjType::List)?;
        let c = tx.put_object(ROOT, "consent", ObjType::Map)?;
        tx.put(
            &c,
            "basis",
            new.consent_basis.as_deref().unwrap_or("consent"),
        )?;
        tx.put(&c, "at", ScalarValue::Timestamp(now))?;
        tx.put(&c, "by", "applicant")?;
        let cap = tx.put_object(ROOT, "capture", ObjType::Map)?;
        tx.put(&cap, "officer", e.user_id.as_str())?;
        tx.put(&cap, "device", e.device_id.as_str())?;
        tx.put(&cap, "at", ScalarValue::Timestamp(now))?;
        if let Some(visit) = new.visit {
            tx.put(&cap, "visit", visit.to_string())?;
        }
        tx.put(ROOT, "status", ApplicationStatus::Draft.as_str())?;
        let h = tx.put_object(ROOT, "history", ObjType::List)?;
        push_history(
            &mut tx,
            &h,
            0,
            now,
            &e.user_id,
            None,
            ApplicationStatus::Draft,
        )?;
        tx.commit();
        self.store_new(id, &doc, now).await?;
        if let Some(visit) = new.visit {
            // Link the application from its visit; a visit the device lacks is not an error.
            match self
                .edit(visit, |tx| {
                    let list = match tx.get(ROOT, "applications")? {
                        Some((automerge::Value::Object(ObjType::List), list)) => list,
                        _ => tx.put_object(ROOT, "applications", ObjType::List)?,
                    };
                    let len = tx.length(&list);
                    tx.insert(&list, len, id.to_string())?;
                    Ok(())
                })
                .await
            {
                Ok(()) | Err(ClientError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(CreatedApplication { id, tracking_code })
    }

    /// Records a new field visit.
    pub async fn create_visit(&self, new: NewVisit) -> Result<DocumentId, ClientError> {
        let e = self.store.require_enrolment().await?;
        let district = Self::check_village(&e, new.village)?;
        let now = now_ms();
        let id = new_document_id(&mut rand::rng());
        let mut doc = Automerge::new().with_actor(e.write_actor()?.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", VISIT)?;
        put_region(&mut tx, district, new.village)?;
        tx.put(ROOT, "officer", e.user_id.as_str())?;
        tx.put(ROOT, "device", e.device_id.as_str())?;
        tx.put(ROOT, "at", ScalarValue::Timestamp(now))?;
        if let Some(p) = &new.purpose {
            tx.put(ROOT, "purpose", p.as_str())?;
        }
        if let Some(n) = &new.notes {
            tx.put(ROOT, "notes", n.as_str())?;
        }
        tx.put_object(ROOT, "applications", ObjType::List)?;
        tx.commit();
        self.store_new(id, &doc, now).await?;
        Ok(id)
    }

    async fn store_new(
        &self,
        id: DocumentId,
        doc: &Automerge,
        now: i64,
    ) -> Result<(), ClientError> {
        let _guard = self.lock.lock().await;
        let mut tx = self.store.begin().await?;
        Store::save(&mut tx, id, doc, None, now).await?;
        Store::note_local_change(&mut tx, id, &doc.get_heads()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Edits a stored document with the enrolled actor; the edit and the sync state's note
    /// of it are stored in one transaction. An edit that changes nothing stores nothing.
    pub async fn edit<F>(&self, id: DocumentId, edit: F) -> Result<(), ClientError>
    where
        F: FnOnce(&mut AmTransaction<'_>) -> Result<(), ClientError>,
    {
        let e = self.store.require_enrolment().await?;
        let _guard = self.lock.lock().await;
        let mut tx = self.store.begin().await?;
        let loaded = Store::load(&mut tx, id)
            .await?
            .ok_or(ClientError::NotFound(id))?;
        let mut doc = loaded.doc.clone().with_actor(e.write_actor()?.clone());
        let mut am = doc.transaction();
        edit(&mut am)?;
        am.commit();
        if doc.get_heads() == loaded.heads {
            return Ok(());
        }
        Store::save(&mut tx, id, &doc, Some(&loaded), now_ms()).await?;
        Store::note_local_change(&mut tx, id, &doc.get_heads()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Sets one service-specific field of an application.
    pub async fn set_field(
        &self,
        id: DocumentId,
        name: &str,
        value: FieldValue,
    ) -> Result<(), ClientError> {
        self.edit(id, |tx| {
            let fields = match tx.get(ROOT, "fields")? {
                Some((automerge::Value::Object(ObjType::Map), obj)) => obj,
                _ => tx.put_object(ROOT, "fields", ObjType::Map)?,
            };
            put_field(tx, &fields, name, &value)
        })
        .await
    }

    /// Sets one applicant detail (`name`, `phone`, `address`) as a scalar string.
    pub async fn set_applicant(
        &self,
        id: DocumentId,
        key: &str,
        value: &str,
    ) -> Result<(), ClientError> {
        self.edit(id, |tx| {
            let a = match tx.get(ROOT, "applicant")? {
                Some((automerge::Value::Object(ObjType::Map), obj)) => obj,
                _ => tx.put_object(ROOT, "applicant", ObjType::Map)?,
            };
            tx.put(&a, key, value)?;
            Ok(())
        })
        .await
    }

    /// Hands an application in: `draft` or `needs_revision` → `submitted`, with a history
    /// entry. Returns the new status.
    pub async fn submit(&self, id: DocumentId) -> Result<ApplicationStatus, ClientError> {
        let e = self.store.require_enrolment().await?;
        let view = self.application(id).await?;
        let to = ApplicationStatus::Submitted;
        if !ApplicationStatus::transition_allowed(view.status, to, Role::Officer) {
            return Err(ClientError::CannotSubmit { from: view.status });
        }
        let today = jakarta_today(now_ms() / 1000);
        let issues = view.service.service().check_fields(&view.fields, today);
        if !issues.is_empty() {
            let names: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
            return Err(ClientError::Fields(names.join(", ")));
        }
        let from = view.status;
        self.edit(id, |tx| {
            tx.put(ROOT, "status", to.as_str())?;
            let h = match tx.get(ROOT, "history")? {
                Some((automerge::Value::Object(ObjType::List), obj)) => obj,
                _ => tx.put_object(ROOT, "history", ObjType::List)?,
            };
            let len = tx.length(&h);
            push_history(tx, &h, len, now_ms(), &e.user_id, Some(from), to)?;
            Ok(())
        })
        .await?;
        Ok(to)
    }
}

fn new_document_id(rng: &mut impl RngCore) -> DocumentId {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    DocumentId::random(bytes)
}

fn put_region(
    tx: &mut AmTransaction<'_>,
    district: RegionCode,
    village: RegionCode,
) -> Result<(), AutomergeError> {
    let r = tx.put_object(ROOT, "region", ObjType::Map)?;
    tx.put(&r, "district", district.as_str())?;
    tx.put(&r, "village", village.as_str())?;
    Ok(())
}

fn put_field(
    tx: &mut AmTransaction<'_>,
    obj: &automerge::ObjId,
    name: &str,
    value: &FieldValue,
) -> Result<(), ClientError> {
    match value {
        FieldValue::Text(s) => tx.put(obj, name, s.as_str())?,
        FieldValue::Integer(i) => tx.put(obj, name, *i)?,
        FieldValue::Float(x) => tx.put(obj, name, *x)?,
        FieldValue::Boolean(b) => tx.put(obj, name, *b)?,
        FieldValue::Other => return Err(ClientError::Fields(name.to_owned())),
    }
    Ok(())
}

fn push_history(
    tx: &mut AmTransaction<'_>,
    list: &automerge::ObjId,
    index: usize,
    at: i64,
    by: &str,
    from: Option<ApplicationStatus>,
    to: ApplicationStatus,
) -> Result<(), AutomergeError> {
    let entry = tx.insert_object(list, index, ObjType::Map)?;
    tx.put(&entry, "at", ScalarValue::Timestamp(at))?;
    tx.put(&entry, "by", by)?;
    tx.put(&entry, "role", Role::Officer.as_str())?;
    if let Some(from) = from {
        tx.put(&entry, "from", from.as_str())?;
    }
    tx.put(&entry, "to", to.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ActorId;
    use jemput_domain::DocumentView;

    const NIK: &str = "3471011503850001";

    async fn client() -> (tempfile::TempDir, Client, ActorId) {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = Client::open(&dir.path().join("field.db"))
            .await
            .expect("open");
        let actor = ActorId::from(vec![0x42; 16]);
        let enrolment = Enrolment {
            server_url: "http://127.0.0.1:1".into(),
            device_id: "dev-1".into(),
            device_token: "token".into(),
            user_id: "7".into(),
            username: "budi".into(),
            regions: vec!["34.71.01".into()],
            actor_ids: vec![actor.clone()],
        };
        client
            .store
            .save_enrolment(&enrolment, 1)
            .await
            .expect("enrol");
        (dir, client, actor)
    }

    pub(crate) fn ktp(village: &str) -> NewApplication {
        let today = jakarta_today(now_ms() / 1000);
        NewApplication {
            service: ServiceCode::parse("DUKCAPIL-KTP-EL-BARU").expect("service"),
            village: RegionCode::parse(village).expect("village"),
            applicant: Applicant {
                nik: Nik::parse(NIK, today).expect("nik"),
                kk: None,
                name: "Siti Aminah".into(),
                birth_date: None,
                sex: Some(Sex::Female),
                phone: Some("081234567890".into()),
                address: None,
            },
            fields: BTreeMap::from([
                (
                    "recording_status".into(),
                    FieldValue::Text("belum_rekam".into()),
                ),
                ("marital_status".into(), FieldValue::Text("kawin".into())),
                ("home_recording_needed".into(), FieldValue::Boolean(true)),
            ]),
            consent_basis: None,
            visit: None,
        }
    }

    fn only_actor(doc: &Automerge, actor: &ActorId) {
        for change in doc.get_changes(&[]) {
            assert_eq!(
                change.actor_id(),
                actor,
                "every change uses the enrolled actor"
            );
        }
    }

    #[tokio::test]
    async fn capture_edit_submit_with_scalars_and_the_enrolled_actor() {
        let (_dir, client, actor) = client().await;
        let visit = client
            .create_visit(NewVisit {
                village: RegionCode::parse("34.71.01.1001").expect("village"),
                purpose: Some("home_visit".into()),
                notes: None,
            })
            .await
            .expect("visit");
        let mut new = ktp("34.71.01.1001");
        new.visit = Some(visit);
        let created = client.create_application(new).await.expect("create");
        let view = client.application(created.id).await.expect("view");
        assert_eq!(view.tracking_code, created.tracking_code);
        assert_eq!(view.status, ApplicationStatus::Draft);
        assert_eq!(view.region.district.as_str(), "34.71.01");
        // Enumerations and ids are scalar strings, never Text.
        let doc = client.document(created.id).await.expect("doc");
        let (status, _) = doc.get(ROOT, "status").expect("get").expect("status");
        assert!(matches!(status, automerge::Value::Scalar(_)));

        client
            .set_applicant(created.id, "address", "Jl. Magelang 1")
            .await
            .expect("edit");
        assert_eq!(
            client.submit(created.id).await.expect("submit"),
            ApplicationStatus::Submitted
        );
        assert!(matches!(
            client.submit(created.id).await,
            Err(ClientError::CannotSubmit {
                from: ApplicationStatus::Submitted
            })
        ));
        let view = client.application(created.id).await.expect("view");
        assert_eq!(view.history.len(), 2);
        assert_eq!(view.applicant.address.as_deref(), Some("Jl. Magelang 1"));
        only_actor(&client.document(created.id).await.expect("doc"), &actor);

        let visit_doc = client.document(visit).await.expect("visit doc");
        only_actor(&visit_doc, &actor);
        match DocumentView::from_doc(&visit_doc).expect("view") {
            DocumentView::Visit(v) => assert_eq!(v.applications, vec![created.id]),
            other => panic!("not a visit: {other:?}"),
        }

        // Every write was noted for sync in the same transaction as its bytes.
        let mut tx = client.store.begin().await.expect("begin");
        let state = Store::load_state(&mut tx).await.expect("state");
        drop(tx);
        assert_eq!(
            state.documents[&created.id].heads,
            client.document(created.id).await.expect("doc").get_heads()
        );
        assert_eq!(state.documents_for_request().len(), 2);
        let list = client.list().await.expect("list");
        assert_eq!(list.len(), 2);
        assert!(
            list.iter()
                .any(|d| d.status.as_deref() == Some("submitted"))
        );
    }

    #[tokio::test]
    async fn refuses_regions_outside_the_officers_and_bad_fields() {
        let (_dir, client, _) = client().await;
        assert!(matches!(
            client.create_application(ktp("35.78.01.1001")).await,
            Err(ClientError::RegionNotAssigned(_))
        ));
        let mut missing = ktp("34.71.01.1001");
        missing.fields.remove("marital_status");
        assert!(matches!(
            client.create_application(missing).await,
            Err(ClientError::Fields(_))
        ));
        assert!(client.list().await.expect("list").is_empty());
    }
}
