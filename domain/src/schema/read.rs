//! Reading Automerge values by path, accepting the two ways clients write a string.
//!
//! Our SDK writes enumerations and ids as scalar strings; unchanged JS Automerge 3 clients turn
//! every plain string into a Text object. Both read as a string here. Everything else is
//! strict: a known field of the wrong type is an error naming its path.

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value};
use time::OffsetDateTime;

use super::{InvalidValue, SchemaError};

/// One value read from a document, with the path it was read at (for errors).
pub(super) enum Node {
    Str(String),
    Int(i64),
    Uint(u64),
    F64(f64),
    Bool(bool),
    Timestamp(i64),
    Map(Obj),
    List(Obj),
    /// Bytes, counters and values from future Automerge versions: nothing we read is one.
    Other,
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) | Self::Uint(_) | Self::F64(_) => "number",
            Self::Bool(_) => "boolean",
            Self::Timestamp(_) => "timestamp",
            Self::Map(_) => "map",
            Self::List(_) => "list",
            Self::Other => "other",
        }
    }
}

/// A map or list object in a document, and its path from the root.
pub(super) struct Obj {
    id: ObjId,
    path: String,
}

impl Obj {
    pub(super) fn root() -> Self {
        Self {
            id: automerge::ROOT,
            path: String::new(),
        }
    }

    /// The path of `key` inside this map.
    pub(super) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn index_path(&self, index: usize) -> String {
        format!("{}[{index}]", self.path)
    }
}

/// Reads one document; every method takes the object and key and returns typed values.
pub(super) struct Reader<'d> {
    doc: &'d Automerge,
}

impl<'d> Reader<'d> {
    pub(super) fn new(doc: &'d Automerge) -> Self {
        Self { doc }
    }

    /// The value at `key` of map `obj`; `None` when absent or null (a client clearing a field).
    pub(super) fn get(&self, obj: &Obj, key: &str) -> Result<Option<(Node, String)>, SchemaError> {
        let path = obj.child_path(key);
        let found = self.doc.get(&obj.id, key)?;
        self.node(found, path)
    }

    /// The items of list `list`, each with its path.
    pub(super) fn items(&self, list: &Obj) -> Result<Vec<(Node, String)>, SchemaError> {
        let mut out = Vec::new();
        for index in 0..self.doc.length(&list.id) {
            let found = self.doc.get(&list.id, index)?;
            if let Some(item) = self.node(found, list.index_path(index))? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// The keys of map `obj`, sorted.
    pub(super) fn keys(&self, obj: &Obj) -> Vec<String> {
        self.doc.keys(&obj.id).collect()
    }

    fn node(
        &self,
        found: Option<(Value<'_>, ObjId)>,
        path: String,
    ) -> Result<Option<(Node, String)>, SchemaError> {
        let Some((value, id)) = found else {
            return Ok(None);
        };
        let node = match value {
            Value::Object(ObjType::Text) => Node::Str(self.doc.text(&id)?),
            Value::Object(ObjType::Map | ObjType::Table) => Node::Map(Obj {
                id,
                path: path.clone(),
            }),
            Value::Object(ObjType::List) => Node::List(Obj {
                id,
                path: path.clone(),
            }),
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Null => return Ok(None),
                ScalarValue::Str(s) => Node::Str(s.to_string()),
                ScalarValue::Int(i) => Node::Int(*i),
                ScalarValue::Uint(u) => Node::Uint(*u),
                ScalarValue::F64(f) => Node::F64(*f),
                ScalarValue::Boolean(b) => Node::Bool(*b),
                ScalarValue::Timestamp(t) => Node::Timestamp(*t),
                ScalarValue::Bytes(_) | ScalarValue::Counter(_) | ScalarValue::Unknown { .. } => {
                    Node::Other
                }
            },
        };
        Ok(Some((node, path)))
    }

    /// A string (scalar or Text) at `key`, if present.
    pub(super) fn opt_str(&self, obj: &Obj, key: &str) -> Result<Option<String>, SchemaError> {
        match self.get(obj, key)? {
            None => Ok(None),
            Some((Node::Str(s), _)) => Ok(Some(s)),
            Some((other, path)) => Err(wrong_type(path, "string", &other)),
        }
    }

    /// A string at `key` parsed into a domain value; a parse failure names the path.
    pub(super) fn opt_parsed<T, E>(
        &self,
        obj: &Obj,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, SchemaError>
    where
        E: Into<InvalidValue>,
    {
        match self.opt_str(obj, key)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .map_err(|e| invalid(obj.child_path(key), e.into())),
        }
    }

    /// A present string at `key` parsed into a domain value.
    pub(super) fn parsed<T, E>(
        &self,
        obj: &Obj,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, SchemaError>
    where
        E: Into<InvalidValue>,
    {
        self.opt_parsed(obj, key, parse)?
            .ok_or_else(|| missing(obj, key))
    }

    /// A map at `key`, if present.
    pub(super) fn opt_map(&self, obj: &Obj, key: &str) -> Result<Option<Obj>, SchemaError> {
        match self.get(obj, key)? {
            None => Ok(None),
            Some((Node::Map(m), _)) => Ok(Some(m)),
            Some((other, path)) => Err(wrong_type(path, "map", &other)),
        }
    }

    /// A list at `key`, if present.
    pub(super) fn opt_list(&self, obj: &Obj, key: &str) -> Result<Option<Obj>, SchemaError> {
        match self.get(obj, key)? {
            None => Ok(None),
            Some((Node::List(l), _)) => Ok(Some(l)),
            Some((other, path)) => Err(wrong_type(path, "list", &other)),
        }
    }

    /// A non-negative whole number at `key`, if present (integers, or floats with no fraction
    /// as JS numbers may arrive).
    pub(super) fn opt_u64(&self, obj: &Obj, key: &str) -> Result<Option<u64>, SchemaError> {
        let Some((node, path)) = self.get(obj, key)? else {
            return Ok(None);
        };
        let value = match node {
            Node::Uint(u) => Some(u),
            Node::Int(i) => u64::try_from(i).ok(),
            Node::F64(f) if f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&f) => {
                Some(f as u64)
            }
            Node::F64(_) => None,
            other => return Err(wrong_type(path, "number", &other)),
        };
        value
            .map(Some)
            .ok_or_else(|| invalid(path, InvalidValue::OutOfRange))
    }

    /// A point in time at `key`, if present: an Automerge timestamp or a number (milliseconds
    /// since the Unix epoch, as JS `Date.now()`), or an RFC 3339 string.
    pub(super) fn opt_time(
        &self,
        obj: &Obj,
        key: &str,
    ) -> Result<Option<OffsetDateTime>, SchemaError> {
        let Some((node, path)) = self.get(obj, key)? else {
            return Ok(None);
        };
        let millis = match node {
            Node::Timestamp(ms) | Node::Int(ms) => Some(i128::from(ms)),
            Node::Uint(ms) => Some(i128::from(ms)),
            Node::F64(ms) if ms.fract() == 0.0 && ms.abs() <= MAX_SAFE_INTEGER => Some(ms as i128),
            Node::F64(_) => None,
            Node::Str(s) => {
                let parsed =
                    OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339);
                return parsed
                    .map(|t| Some(t.to_offset(time::UtcOffset::UTC)))
                    .map_err(|_| invalid(path, InvalidValue::Timestamp));
            }
            other => return Err(wrong_type(path, "timestamp", &other)),
        };
        millis
            .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
            .map(Some)
            .ok_or_else(|| invalid(path, InvalidValue::Timestamp))
    }

    /// A point in time at `key` that must be present.
    pub(super) fn time(&self, obj: &Obj, key: &str) -> Result<OffsetDateTime, SchemaError> {
        self.opt_time(obj, key)?.ok_or_else(|| missing(obj, key))
    }
}

/// 2^53 − 1: the largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub(super) fn missing(obj: &Obj, key: &str) -> SchemaError {
    SchemaError::Missing {
        path: obj.child_path(key),
    }
}

pub(super) fn wrong_type(path: String, expected: &'static str, found: &Node) -> SchemaError {
    SchemaError::WrongType {
        path,
        expected,
        found: found.type_name(),
    }
}

pub(super) fn invalid(path: String, reason: InvalidValue) -> SchemaError {
    SchemaError::Invalid { path, reason }
}
