//! The envelope and the routing fields, read in one borrowed pass over the payload.
//!
//! The hot path never builds a `serde_json::Value` tree: it walks the JSON once, keeps only the
//! fields routing needs (event, id, action, filter paths) as borrowed scalars, skips what lies
//! between them with `IgnoredAny` (which checks it is well-formed), and stops at the last field it
//! needs.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The JSON paths an endpoint reads, as a trie; each path owns a slot in the result.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldPlan {
    root: Node,
    slots: usize,
}

#[derive(Debug, Default, Clone)]
struct Node {
    children: Vec<(Box<str>, Node)>,
    slot: Option<usize>,
}

impl FieldPlan {
    /// Adds a dotted path (already checked by the grammar) and returns its slot.
    pub(crate) fn add(&mut self, segments: &[&str]) -> usize {
        let mut node = &mut self.root;
        for segment in segments {
            let index = match node.children.iter().position(|(k, _)| &**k == *segment) {
                Some(i) => i,
                None => {
                    node.children.push(((*segment).into(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[index].1;
        }
        *node.slot.get_or_insert_with(|| {
            self.slots += 1;
            self.slots - 1
        })
    }
}

/// A value found at a path. Objects and arrays are only noted, never kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Compound,
}

impl Scalar<'_> {
    /// The value as text, for the event name and the delivery id.
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.to_string()),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::UInt(n) => Some(n.to_string()),
            Scalar::Float(n) => Some(n.to_string()),
            Scalar::Bool(_) | Scalar::Null | Scalar::Compound => None,
        }
    }
}

/// Reads the planned fields of a JSON document whose root must be an object.
///
/// The walk stops at the last planned field it needs: the rest of the document is neither read
/// nor checked (a handler's `Json<T>` reads it, and a body malformed there fails that handler,
/// recorded and retried, rather than the request). With nothing planned, only the root is
/// checked to open an object.
pub(crate) fn extract<'a>(
    json: &'a [u8],
    plan: &FieldPlan,
) -> Result<Vec<Option<Scalar<'a>>>, String> {
    let mut found = Found {
        out: vec![None; plan.slots],
        missing: plan.slots,
    };
    if plan.slots == 0 {
        return match json.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(found.out),
            _ => Err("the body's JSON root must be an object".into()),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let walked = de::Deserializer::deserialize_any(
        &mut deserializer,
        Walk {
            node: &plan.root,
            found: &mut found,
            root: true,
        },
    );
    if found.missing == 0 {
        // Every planned field was found; the walk stopped there on purpose.
        return Ok(found.out);
    }
    walked.map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(found.out)
}

/// The fields found so far, and how many planned ones are still missing.
struct Found<'a> {
    out: Vec<Option<Scalar<'a>>>,
    missing: usize,
}

/// The JSON document of a body. A JSON body is itself. A form-encoded body
/// (`application/x-www-form-urlencoded`) carries its JSON in a `payload` field (GitHub, Slack
/// interactivity), or is its fields (Twilio, Slack slash commands): then the document is a JSON
/// object of those fields as strings, the last value winning for a repeated name.
pub(crate) fn payload(body: &Bytes, content_type: Option<&str>) -> Bytes {
    let is_form = content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if !is_form {
        return body.clone();
    }
    if let Some((_, json)) = form_urlencoded::parse(body).find(|(key, _)| key == "payload") {
        return Bytes::from(json.into_owned());
    }
    let fields: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    Bytes::from(serde_json::Value::Object(fields).to_string())
}

struct Walk<'p, 'o, 'a> {
    node: &'p Node,
    found: &'o mut Found<'a>,
    root: bool,
}

impl<'a> Walk<'_, '_, 'a> {
    fn record(self, value: Scalar<'a>) -> Result<(), ()> {
        if let Some(slot) = self.node.slot {
            let entry = &mut self.found.out[slot];
            if entry.is_none() {
                self.found.missing -= 1;
            }
            *entry = Some(value);
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.found.missing == 0
    }

    fn child(&mut self, key: &str) -> Option<Walk<'_, '_, 'a>> {
        let node = self
            .node
            .children
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, n)| n)?;
        Some(Walk {
            node,
            found: self.found,
            root: false,
        })
    }

    fn scalar<E: de::Error>(self, value: Scalar<'a>) -> Result<(), E> {
        if self.root {
            return Err(E::custom("the body's JSON root must be an object"));
        }
        self.record(value).map_err(|()| E::custom("unreachable"))
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.root {
            "a JSON object"
        } else {
            "a JSON value"
        })
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Null)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            match self.child(&key) {
                Some(child) => {
                    map.next_value_seed(child)?;
                    if self.complete() {
                        // Stop here. The parser then finds this object unfinished and fails
                        // with one plain syntax error, which `extract` never reports; a
                        // custom error would cost a formatted message and a copy at each level.
                        return Ok(());
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let _ = self.record(Scalar::Compound);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.root {
            return Err(de::Error::custom(
                "the body's JSON root must be an object, not an array",
            ));
        }
        let mut index = 0usize;
        loop {
            let found = match self.node.children.is_empty() {
                true => None,
                false => self.child(&index.to_string()),
            };
            let more = match found {
                Some(child) => seq.next_element_seed(child)?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
            if self.complete() {
                return Ok(());
            }
            index += 1;
        }
        let _ = self.record(Scalar::Compound);
        Ok(())
    }
}

/// An object key, borrowed from the input when it holds no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(paths: &[&str]) -> FieldPlan {
        let mut plan = FieldPlan::default();
        for p in paths {
            plan.add(&hooksmith_grammar::parse_json_path(p).unwrap());
        }
        plan
    }

    #[test]
    fn reads_only_planned_fields() {
        let json = br#"{"action":"opened","number":7,"pull_request":{"title":"Fix \"it\"","draft":false},"commits":[{"id":"a"},{"id":"b"}],"x":null}"#;
        let p = plan(&[
            "action",
            "pull_request.title",
            "number",
            "commits.1.id",
            "missing",
            "pull_request",
            "x",
        ]);
        let got = extract(json, &p).unwrap();
        assert_eq!(got[0], Some(Scalar::Str("opened".into())));
        assert!(
            matches!(got[0], Some(Scalar::Str(Cow::Borrowed(_)))),
            "unescaped strings are borrowed"
        );
        assert_eq!(got[1], Some(Scalar::Str("Fix \"it\"".into())));
        assert_eq!(got[2], Some(Scalar::UInt(7)));
        assert_eq!(got[3], Some(Scalar::Str("b".into())));
        assert_eq!(got[4], None);
        assert_eq!(got[5], Some(Scalar::Compound));
        assert_eq!(got[6], Some(Scalar::Null));
    }

    #[test]
    fn the_root_must_be_an_object_and_the_document_well_formed() {
        let p = plan(&["action"]);
        for bad in [
            &b"[1,2]"[..],
            b"\"s\"",
            b"12",
            b"null",
            b"{",
            b"{\"a\":}",
            b"{} x",
            b"",
            b"{\"a\":[1,}",
        ] {
            assert!(
                extract(bad, &p).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(bad)
            );
        }
        extract(b" {} ", &p).unwrap();
    }

    #[test]
    fn the_walk_stops_at_the_last_field_it_needs() {
        // What follows the planned fields is not read: a large body costs what its head costs.
        let p = plan(&["action", "number"]);
        let got = extract(br#"{"action":"opened","number":7,"rest":[1,2,"#, &p).unwrap();
        assert_eq!(
            got,
            vec![Some(Scalar::Str("opened".into())), Some(Scalar::UInt(7))]
        );
        // A field still missing means reading on, to the end, which must be well-formed.
        assert!(extract(br#"{"action":"opened","rest":[1,2,"#, &p).is_err());
        // A planned object is complete only at its end.
        let p = plan(&["pull_request", "pull_request.title"]);
        let got = extract(br#"{"pull_request":{"title":"t","x":1},"y":"#, &p).unwrap();
        assert_eq!(
            got,
            vec![Some(Scalar::Compound), Some(Scalar::Str("t".into()))]
        );
        // Nothing planned: the root must still open an object.
        let none = plan(&[]);
        assert!(extract(b" {\"anything\"", &none).is_ok());
        for bad in [&b"[1]"[..], b"", b"  \"s\"", b"x"] {
            assert!(extract(bad, &none).is_err());
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // Skipped values are walked without recursion; planned paths recurse only as deep as the
        // path is long.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(extract(deep.as_bytes(), &plan(&["b"])).unwrap(), vec![None]);
        assert_eq!(
            extract(deep.as_bytes(), &plan(&["a.0.0"])).unwrap(),
            vec![Some(Scalar::Compound)]
        );
        let unbalanced = "[".repeat(100_000);
        assert!(extract(format!("{{\"a\":{unbalanced}}}").as_bytes(), &plan(&["a"])).is_err());
    }

    #[test]
    fn form_bodies_carry_json_in_payload_or_are_their_fields() {
        let body = Bytes::from_static(b"payload=%7B%22action%22%3A%22opened%22%7D");
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(
            payload(&body, form),
            Bytes::from_static(br#"{"action":"opened"}"#)
        );
        assert_eq!(payload(&body, Some("application/json")), body);
        assert_eq!(payload(&body, None), body);
        let fields = payload(
            &Bytes::from_static(b"CallSid=CA1&Digits=1234&Digits=5"),
            form,
        );
        let fields: serde_json::Value = serde_json::from_slice(&fields).unwrap();
        assert_eq!(fields, serde_json::json!({"CallSid": "CA1", "Digits": "5"}));
    }

    proptest! {
        #[test]
        fn agrees_with_a_full_parse(value in arb_json(), path in "[a-c](\\.[a-c0-1]){0,2}") {
            let json = serde_json::to_vec(&value).unwrap();
            let p = plan(&[&path]);
            let got = extract(&json, &p);
            match &value {
                serde_json::Value::Object(_) => {
                    let got = got.unwrap();
                    let pointer = format!("/{}", path.replace('.', "/"));
                    let expected = value.pointer(&pointer).map(|v| match v {
                        serde_json::Value::String(s) => Scalar::Str(s.clone().into()),
                        serde_json::Value::Bool(b) => Scalar::Bool(*b),
                        serde_json::Value::Null => Scalar::Null,
                        serde_json::Value::Number(n) => n.as_u64().map(Scalar::UInt)
                            .or(n.as_i64().map(Scalar::Int))
                            .unwrap_or(Scalar::Float(n.as_f64().unwrap())),
                        _ => Scalar::Compound,
                    });
                    prop_assert_eq!(&got[0], &expected);
                }
                _ => prop_assert!(got.is_err()),
            }
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = extract(&bytes, &plan(&["a.b", "a.0", "c"]));
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| n.into()),
            "[a-z\"\\\\é]{0,6}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-c0-1]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
