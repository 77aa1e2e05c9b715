//! A stored delivery's headers, kept in one buffer.

use std::fmt;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Header names and values, in the order received, held in one buffer: a delivery's dozen headers
/// cost two allocations instead of two dozen, in the history and in every record a handler sees.
///
/// Serialized as a list of `[name, value]` pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    text: String,
    /// Where each header's name ends and where its value ends, in `text`: 32-bit offsets, since
    /// the history keeps thousands of lists (a request's headers are limited to kilobytes).
    ends: Vec<(u32, u32)>,
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `headers` headers of `bytes` bytes of names and values in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(headers),
        }
    }

    /// Appends a header.
    ///
    /// # Panics
    ///
    /// If the list's names and values would add up to more than 4 GiB.
    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.offset();
        self.text.push_str(value);
        let value_end = self.offset();
        self.ends.push((name_end, value_end));
    }

    fn offset(&self) -> u32 {
        u32::try_from(self.text.len()).expect("a header list holds at most 4 GiB of text")
    }

    /// The two buffers behind the list, for reading them ahead of a drop.
    pub(crate) fn buffers(&self) -> (&[u8], &[(u32, u32)]) {
        (self.text.as_bytes(), &self.ends)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The headers in order, as `(name, value)`.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// The first value of header `name`, whose case does not matter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// As an [`http::HeaderMap`]; a name or value that is not valid there is left out.
    pub(crate) fn to_header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::with_capacity(self.len());
        for (name, value) in self {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name),
                http::HeaderValue::try_from(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    fn at(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1].1,
        };
        let (name_end, value_end) = self.ends[i];
        let (start, name_end, value_end) = (start as usize, name_end as usize, value_end as usize);
        (&self.text[start..name_end], &self.text[name_end..value_end])
    }
}

/// The headers of a [`HeaderList`], in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    list: &'a HeaderList,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        (self.next < self.list.len()).then(|| {
            self.next += 1;
            self.list.at(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> Self {
        let mut list = Self::new();
        for (name, value) in headers {
            list.push(name.as_ref(), value.as_ref());
        }
        list
    }
}

impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for HeaderList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for pair in self {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<(String, String)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderList;
    use proptest::prelude::*;

    proptest! {
        /// Whatever goes in comes out, in order, and through JSON the same as a list of pairs.
        #[test]
        fn pairs_come_back_as_pushed(pairs in proptest::collection::vec((".{0,12}", ".{0,40}"), 0..20)) {
            let list: HeaderList = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            prop_assert_eq!(list.len(), pairs.len());
            let back: Vec<(String, String)> =
                list.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(&back, &pairs);
            let json = serde_json::to_string(&list).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&pairs).unwrap());
            prop_assert_eq!(serde_json::from_str::<HeaderList>(&json).unwrap(), list);
        }
    }

    #[test]
    fn get_finds_the_first_value_whatever_the_case() {
        let list: HeaderList = [("content-type", "a"), ("x-id", "1"), ("x-id", "2")]
            .into_iter()
            .collect();
        assert_eq!(list.get("X-ID"), Some("1"));
        assert_eq!(list.get("Content-Type"), Some("a"));
        assert_eq!(list.get("missing"), None);
        assert!(HeaderList::new().is_empty());
    }
}
