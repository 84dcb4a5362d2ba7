//! The `AccountStore` implementation both dialects share, as a macro over the storage type,
//! its connection type, its read pool and its transactional write.
//!
//! The SQL is portable (`$n` placeholders, `ON CONFLICT`, `RETURNING`); what differs between
//! SQLite and PostgreSQL is only how a write is run: through SQLite's single writer task, or in
//! a transaction on the PostgreSQL pool. Writing the Rust glue once keeps the two from drifting
//! apart, which a generic function over `sqlx::Database` cannot do without a page of bounds.

/// Implements `AccountStore` for `$storage`, whose `$reads()` returns a pool and whose
/// `$write(|connection: &mut $conn| ...)` runs one atomic, durable write.
macro_rules! portable_account_store {
    ($storage:ty, $conn:ty, $reads:ident, $write:ident) => {
        use std::collections::HashMap;

        use automerge::ActorId;
        use futures_util::future::BoxFuture;
        use jemput_domain::{Agency, RegionCode};
        use sqlx::Row;

        use $crate::storage::accounts::{
            AccountStore, ActorOwner, Credential, CredentialKind, CredentialRecord,
            CredentialState, DeviceId, DeviceRecord, DeviceRow, NewDevice, NewUser, PasswordHash,
            SessionId, TokenHash, UnixMillis, UserAccount, UserId, UserRow, Username, actor_to_db,
            device_id_from_db, sql,
        };
        use $crate::storage::{StorageError, conflict_or};

        impl $storage {
            async fn account(
                &self,
                row: Option<UserRow>,
            ) -> Result<Option<UserAccount>, StorageError> {
                let Some(row) = row else { return Ok(None) };
                let regions: Vec<String> = sqlx::query_scalar(sql::USER_REGIONS)
                    .bind(row.id)
                    .fetch_all(self.$reads())
                    .await?;
                let agencies: Vec<String> = sqlx::query_scalar(sql::USER_AGENCIES)
                    .bind(row.id)
                    .fetch_all(self.$reads())
                    .await?;
                row.into_account(&regions, &agencies).map(Some)
            }

            async fn account_by_id(&self, id: i64) -> Result<Option<UserAccount>, StorageError> {
                let row = sqlx::query_as::<_, UserRow>(sql::USER_BY_ID)
                    .bind(id)
                    .fetch_optional(self.$reads())
                    .await?;
                self.account(row).await
            }

            async fn device_by_id(&self, id: &str) -> Result<Option<DeviceRecord>, StorageError> {
                sqlx::query_as::<_, DeviceRow>(sql::DEVICE_BY_ID)
                    .bind(id)
                    .fetch_optional(self.$reads())
                    .await?
                    .map(DeviceRow::into_record)
                    .transpose()
            }

            /// Runs `change` on the writer for the user named `username`, if there is one, and
            /// returns the account as it is afterwards.
            async fn change_user<F>(
                &self,
                username: &Username,
                change: F,
            ) -> Result<Option<UserAccount>, StorageError>
            where
                F: for<'c> FnOnce(&'c mut $conn, i64) -> BoxFuture<'c, Result<(), sqlx::Error>>
                    + Send
                    + 'static,
            {
                let username = username.as_str().to_owned();
                let id = self
                    .$write(move |connection| {
                        Box::pin(async move {
                            let id: Option<i64> = sqlx::query_scalar(sql::USER_ID_BY_NAME)
                                .bind(&username)
                                .fetch_optional(&mut *connection)
                                .await?;
                            let Some(id) = id else { return Ok(None) };
                            change(connection, id).await?;
                            Ok(Some(id))
                        })
                    })
                    .await?;
                match id {
                    Some(id) => self.account_by_id(id).await,
                    None => Ok(None),
                }
            }
        }

        async fn insert_regions(
            connection: &mut $conn,
            user: i64,
            regions: &[RegionCode],
        ) -> Result<(), sqlx::Error> {
            for region in regions {
                sqlx::query(sql::INSERT_REGION)
                    .bind(user)
                    .bind(region.as_str())
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(())
        }

        async fn insert_agencies(
            connection: &mut $conn,
            user: i64,
            agencies: &[Agency],
        ) -> Result<(), sqlx::Error> {
            for agency in agencies {
                sqlx::query(sql::INSERT_AGENCY)
                    .bind(user)
                    .bind(agency.as_str())
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(())
        }

        impl AccountStore for $storage {
            async fn create_user(&self, user: NewUser) -> Result<UserAccount, StorageError> {
                let id = self
                    .$write(move |connection| {
                        Box::pin(async move {
                            let id: i64 = sqlx::query_scalar(sql::INSERT_USER)
                                .bind(user.username.as_str())
                                .bind(user.role.as_str())
                                .bind(&user.password_hash.0)
                                .bind(user.created_at)
                                .fetch_one(&mut *connection)
                                .await?;
                            insert_regions(connection, id, &user.regions).await?;
                            insert_agencies(connection, id, &user.agencies).await?;
                            Ok(id)
                        })
                    })
                    .await
                    .map_err(|error| match error {
                        StorageError::Database(error) => conflict_or(error, "username taken"),
                        other => other,
                    })?;
                self.account_by_id(id)
                    .await?
                    .ok_or_else(|| StorageError::Corrupt("created user vanished".into()))
            }

            async fn user(&self, username: &Username) -> Result<Option<UserAccount>, StorageError> {
                let row = sqlx::query_as::<_, UserRow>(sql::USER_BY_NAME)
                    .bind(username.as_str())
                    .fetch_optional(self.$reads())
                    .await?;
                self.account(row).await
            }

            async fn user_by_id(&self, id: UserId) -> Result<Option<UserAccount>, StorageError> {
                self.account_by_id(id.0).await
            }

            async fn login_record(
                &self,
                username: &Username,
            ) -> Result<Option<(UserAccount, PasswordHash)>, StorageError> {
                let Some(account) = self.user(username).await? else {
                    return Ok(None);
                };
                let hash: String = sqlx::query_scalar(sql::USER_PASSWORD)
                    .bind(account.id.0)
                    .fetch_one(self.$reads())
                    .await?;
                Ok(Some((account, PasswordHash(hash))))
            }

            async fn list_users(&self) -> Result<Vec<UserAccount>, StorageError> {
                let rows = sqlx::query_as::<_, UserRow>(sql::ALL_USERS)
                    .fetch_all(self.$reads())
                    .await?;
                let mut regions: HashMap<i64, Vec<String>> = HashMap::new();
                for row in sqlx::query(sql::ALL_REGIONS)
                    .fetch_all(self.$reads())
                    .await?
                {
                    regions
                        .entry(row.try_get("user_id")?)
                        .or_default()
                        .push(row.try_get("region")?);
                }
                let mut agencies: HashMap<i64, Vec<String>> = HashMap::new();
                for row in sqlx::query(sql::ALL_AGENCIES)
                    .fetch_all(self.$reads())
                    .await?
                {
                    agencies
                        .entry(row.try_get("user_id")?)
                        .or_default()
                        .push(row.try_get("agency")?);
                }
                rows.into_iter()
                    .map(|row| {
                        let id = row.id;
                        let mut own_regions = regions.remove(&id).unwrap_or_default();
                        own_regions.sort();
                        let mut own_agencies = agencies.remove(&id).unwrap_or_default();
                        own_agencies.sort();
                        row.into_account(&own_regions, &own_agencies)
                    })
                    .collect()
            }

            async fn disable_user(
                &self,
                username: &Username,
                at: UnixMillis,
            ) -> Result<Option<UserAccount>, StorageError> {
                self.change_user(username, move |connection, id| {
                    Box::pin(async move {
                        sqlx::query(sql::DISABLE_USER)
                            .bind(id)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query(sql::REVOKE_USER_SESSIONS)
                            .bind(id)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn assign_regions(
                &self,
                username: &Username,
                regions: Vec<RegionCode>,
                agencies: Option<Vec<Agency>>,
            ) -> Result<Option<UserAccount>, StorageError> {
                self.change_user(username, move |connection, id| {
                    Box::pin(async move {
                        sqlx::query(sql::DELETE_REGIONS)
                            .bind(id)
                            .execute(&mut *connection)
                            .await?;
                        insert_regions(connection, id, &regions).await?;
                        if let Some(agencies) = agencies {
                            sqlx::query(sql::DELETE_AGENCIES)
                                .bind(id)
                                .execute(&mut *connection)
                                .await?;
                            insert_agencies(connection, id, &agencies).await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn set_password(
                &self,
                username: &Username,
                hash: PasswordHash,
                at: UnixMillis,
            ) -> Result<Option<UserAccount>, StorageError> {
                self.change_user(username, move |connection, id| {
                    Box::pin(async move {
                        sqlx::query(sql::SET_PASSWORD)
                            .bind(id)
                            .bind(&hash.0)
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query(sql::REVOKE_USER_SESSIONS)
                            .bind(id)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn create_session(
                &self,
                user: UserId,
                token_hash: TokenHash,
                created_at: UnixMillis,
                expires_at: UnixMillis,
            ) -> Result<SessionId, StorageError> {
                self.$write(move |connection| {
                    Box::pin(async move {
                        let id: i64 = sqlx::query_scalar(sql::INSERT_SESSION)
                            .bind(token_hash.0.as_slice())
                            .bind(user.0)
                            .bind(created_at)
                            .bind(expires_at)
                            .fetch_one(&mut *connection)
                            .await?;
                        Ok(SessionId(id))
                    })
                })
                .await
            }

            async fn revoke_session(
                &self,
                session: SessionId,
                at: UnixMillis,
            ) -> Result<(), StorageError> {
                self.$write(move |connection| {
                    Box::pin(async move {
                        sqlx::query(sql::REVOKE_SESSION)
                            .bind(session.0)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn enrol_device(&self, device: NewDevice) -> Result<DeviceRecord, StorageError> {
                let id = device.id.as_str().to_owned();
                self.$write(move |connection| {
                    Box::pin(async move {
                        sqlx::query(sql::INSERT_DEVICE)
                            .bind(device.id.as_str())
                            .bind(device.token_hash.0.as_slice())
                            .bind(device.owner.0)
                            .bind(&device.label)
                            .bind(device.enrolled_at)
                            .execute(&mut *connection)
                            .await?;
                        let (kind, owner) = ActorOwner::Device(device.id.clone()).to_columns();
                        for actor in &device.actors {
                            sqlx::query(sql::REGISTER_ACTOR)
                                .bind(actor_to_db(actor))
                                .bind(kind)
                                .bind(&owner)
                                .bind(true)
                                .bind(device.enrolled_at)
                                .execute(&mut *connection)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await?;
                self.device_by_id(&id)
                    .await?
                    .ok_or_else(|| StorageError::Corrupt("enrolled device vanished".into()))
            }

            async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
                self.device_by_id(id.as_str()).await
            }

            async fn list_devices(
                &self,
                owner: Option<UserId>,
            ) -> Result<Vec<DeviceRecord>, StorageError> {
                let rows = match owner {
                    Some(owner) => {
                        sqlx::query_as::<_, DeviceRow>(sql::DEVICES_OF)
                            .bind(owner.0)
                            .fetch_all(self.$reads())
                            .await?
                    }
                    None => {
                        sqlx::query_as::<_, DeviceRow>(sql::ALL_DEVICES)
                            .fetch_all(self.$reads())
                            .await?
                    }
                };
                rows.into_iter().map(DeviceRow::into_record).collect()
            }

            async fn revoke_device(
                &self,
                id: &DeviceId,
                at: UnixMillis,
            ) -> Result<Option<DeviceRecord>, StorageError> {
                let key = id.as_str().to_owned();
                self.$write(move |connection| {
                    Box::pin(async move {
                        sqlx::query(sql::REVOKE_DEVICE)
                            .bind(&key)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await?;
                self.device_by_id(id.as_str()).await
            }

            async fn credential_by_token_hash(
                &self,
                kind: CredentialKind,
                hash: TokenHash,
            ) -> Result<Option<CredentialRecord>, StorageError> {
                let (credential, user, expires_at, revoked_at) = match kind {
                    CredentialKind::Session => {
                        let Some(row) = sqlx::query(sql::SESSION_BY_HASH)
                            .bind(hash.0.as_slice())
                            .fetch_optional(self.$reads())
                            .await?
                        else {
                            return Ok(None);
                        };
                        (
                            Credential::Session(SessionId(row.try_get("session_id")?)),
                            row.try_get::<i64, _>("user_id")?,
                            Some(row.try_get::<i64, _>("expires_at")?),
                            row.try_get::<Option<i64>, _>("revoked_at")?,
                        )
                    }
                    CredentialKind::Device => {
                        let Some(row) = sqlx::query(sql::DEVICE_BY_HASH)
                            .bind(hash.0.as_slice())
                            .fetch_optional(self.$reads())
                            .await?
                        else {
                            return Ok(None);
                        };
                        (
                            Credential::Device(device_id_from_db(row.try_get("device_id")?)?),
                            row.try_get::<i64, _>("user_id")?,
                            None,
                            row.try_get::<Option<i64>, _>("revoked_at")?,
                        )
                    }
                };
                let account = self
                    .account_by_id(user)
                    .await?
                    .ok_or_else(|| StorageError::Corrupt("credential of a missing user".into()))?;
                let state = CredentialState {
                    expires_at,
                    revoked_at,
                    user_disabled_at: account.disabled_at,
                };
                Ok(Some(CredentialRecord {
                    account,
                    credential,
                    state,
                }))
            }

            async fn credential_state(
                &self,
                credential: &Credential,
            ) -> Result<Option<CredentialState>, StorageError> {
                let row = match credential {
                    Credential::Session(id) => {
                        sqlx::query(sql::SESSION_STATE)
                            .bind(id.0)
                            .fetch_optional(self.$reads())
                            .await?
                    }
                    Credential::Device(id) => {
                        sqlx::query(sql::DEVICE_STATE)
                            .bind(id.as_str())
                            .fetch_optional(self.$reads())
                            .await?
                    }
                };
                let Some(row) = row else { return Ok(None) };
                let expires_at = match credential {
                    Credential::Session(_) => Some(row.try_get::<i64, _>("expires_at")?),
                    Credential::Device(_) => None,
                };
                Ok(Some(CredentialState {
                    expires_at,
                    revoked_at: row.try_get("revoked_at")?,
                    user_disabled_at: row.try_get("disabled_at")?,
                }))
            }

            async fn actor_owner(
                &self,
                actor: &ActorId,
            ) -> Result<Option<ActorOwner>, StorageError> {
                let row = sqlx::query(sql::ACTOR_OWNER)
                    .bind(actor_to_db(actor))
                    .fetch_optional(self.$reads())
                    .await?;
                row.map(|row| {
                    let kind: String = row.try_get("owner_kind")?;
                    let id: String = row.try_get("owner_id")?;
                    ActorOwner::from_columns(&kind, &id)
                })
                .transpose()
            }

            async fn bind_actor_if_unbound(
                &self,
                actor: &ActorId,
                owner: &ActorOwner,
                at: UnixMillis,
            ) -> Result<ActorOwner, StorageError> {
                let actor = actor_to_db(actor);
                let (kind, id) = owner.to_columns();
                let (kind, id) = self
                    .$write(move |connection| {
                        Box::pin(async move {
                            sqlx::query(sql::BIND_ACTOR)
                                .bind(&actor)
                                .bind(kind)
                                .bind(&id)
                                .bind(false)
                                .bind(at)
                                .execute(&mut *connection)
                                .await?;
                            let row = sqlx::query(sql::ACTOR_OWNER)
                                .bind(&actor)
                                .fetch_one(&mut *connection)
                                .await?;
                            Ok((
                                row.try_get::<String, _>("owner_kind")?,
                                row.try_get::<String, _>("owner_id")?,
                            ))
                        })
                    })
                    .await?;
                ActorOwner::from_columns(&kind, &id)
            }
        }
    };
}

pub(super) use portable_account_store;
