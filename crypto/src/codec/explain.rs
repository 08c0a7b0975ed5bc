//! Why a canonical decoding failed, in words: which field, at which byte, and what was wrong.
//!
//! bincode's own errors say `io error: ` or `the size limit has been reached` and nothing about
//! where. [`explain`] decodes the input a second time (only after the fast path failed, so it
//! costs nothing on good input) through a wrapper that tracks the field path (struct field
//! names, sequence indices, enum variants) and the byte offset, and turns the failure into a
//! sentence such as `field body.chain_id (from byte 0): its length prefix says
//! 9223372036854775808 bytes, but only 120 bytes remain after it`.
//!
//! The second pass runs with a size limit equal to the input's length, so bincode refuses any
//! read that would go past the end *before* reading or allocating: a hostile length prefix
//! can never make it allocate more than the input.

use bincode::Options;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;

/// What the decoder was reading when it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read_ {
    /// Nothing yet.
    Start,
    /// A fixed-size value of `size` bytes starting at byte `at`.
    Fixed { size: usize, at: usize },
    /// A length-prefixed value (string, bytes, sequence) whose 8-byte prefix starts at `at`.
    Prefixed { at: usize },
}

/// One step of the path to the failing value.
#[derive(Clone, Debug)]
struct Segment {
    name: String,
    /// Byte where this field starts.
    at: usize,
    /// For an element of a sequence or tuple: how many elements it declares.
    of: Option<usize>,
}

/// Shared by every wrapper of one [`explain`] pass.
struct Track<'i> {
    input: &'i [u8],
    pos: Cell<usize>,
    path: RefCell<Vec<Segment>>,
    reading: Cell<Read_>,
}

impl Track<'_> {
    fn push(&self, name: String, of: Option<usize>) {
        self.path.borrow_mut().push(Segment {
            name,
            at: self.pos.get(),
            of,
        });
    }

    fn pop(&self) {
        self.path.borrow_mut().pop();
    }

    fn reading(&self, r: Read_) {
        self.reading.set(r);
    }

    fn remaining_from(&self, at: usize) -> usize {
        self.input.len().saturating_sub(at)
    }
}

/// Counts the bytes bincode consumes.
struct Counting<'t, 'i> {
    t: &'t Track<'i>,
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.t.pos.get();
        let rest = self.t.input.get(pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.t.pos.set(pos + n);
        Ok(n)
    }
}

/// Decodes `bytes` as a `T` with field tracking and says why it fails, or None if it decodes
/// (with no trailing bytes) after all.
pub(super) fn explain<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let t = Track {
        input: bytes,
        pos: Cell::new(0),
        path: RefCell::new(Vec::new()),
        reading: Cell::new(Read_::Start),
    };
    let opts = super::options().with_limit(bytes.len() as u64);
    let mut de = bincode::Deserializer::with_reader(Counting { t: &t }, opts);
    match T::deserialize(De { de: &mut de, t: &t }) {
        Ok(_) => {
            let end = t.pos.get();
            (end < bytes.len()).then(|| {
                format!(
                    "{} trailing bytes after the end of the value (it ends at byte {end} of {})",
                    bytes.len() - end,
                    bytes.len()
                )
            })
        }
        Err(e) => Some(describe(&t, &e)),
    }
}

fn describe(t: &Track<'_>, e: &bincode::ErrorKind) -> String {
    let pos = t.pos.get();
    let problem = match e {
        bincode::ErrorKind::SizeLimit | bincode::ErrorKind::Io(_) => match t.reading.get() {
            Read_::Prefixed { at } if pos >= at + 8 => {
                let claimed = t
                    .input
                    .get(at..at + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                format!(
                    "its length prefix at byte {at} says {claimed} bytes, but only {} bytes \
                     remain after it",
                    t.remaining_from(at + 8)
                )
            }
            Read_::Prefixed { at } => format!(
                "the input ends inside its 8-byte length prefix at byte {at} (only {} bytes \
                 remain)",
                t.remaining_from(at)
            ),
            Read_::Fixed { size, at } => format!(
                "it needs {size} byte{} at byte {at}, but the input ends there ({} remain of \
                 {})",
                if size == 1 { "" } else { "s" },
                t.remaining_from(at),
                t.input.len()
            ),
            Read_::Start => format!("the input ends at byte {pos}"),
        },
        bincode::ErrorKind::InvalidUtf8Encoding(u) => {
            format!("it is not valid UTF-8 ({u})")
        }
        bincode::ErrorKind::InvalidBoolEncoding(b) => {
            format!(
                "byte {b} at byte {} is not a bool (0 or 1)",
                pos.saturating_sub(1)
            )
        }
        bincode::ErrorKind::InvalidTagEncoding(tag) => {
            format!(
                "tag {tag} at byte {} is not 0 (none) or 1 (some)",
                pos.saturating_sub(1)
            )
        }
        bincode::ErrorKind::InvalidCharEncoding => "it is not a valid char".to_string(),
        other => other.to_string(),
    };
    let path = t.path.borrow();
    match path.last() {
        None => problem,
        Some(last) => {
            let mut name = String::new();
            for s in path.iter() {
                if !name.is_empty() && !s.name.starts_with('[') {
                    name.push('.');
                }
                name.push_str(&s.name);
            }
            let of = last
                .of
                .map(|n| format!(", one of {n} declared elements"))
                .unwrap_or_default();
            format!("field {name} (from byte {}{of}): {problem}", last.at)
        }
    }
}

/// The tracking wrapper around a deserializer.
struct De<'t, 'i, D> {
    de: D,
    t: &'t Track<'i>,
}

impl<'t, 'i, D> De<'t, 'i, D> {
    fn visitor<V>(&self, v: V, names: Option<&'static [&'static str]>) -> Vis<'t, 'i, V> {
        Vis {
            v,
            t: self.t,
            names,
        }
    }

    fn fixed(&self, size: usize) {
        self.t.reading(Read_::Fixed {
            size,
            at: self.t.pos.get(),
        });
    }

    fn prefixed(&self) {
        self.t.reading(Read_::Prefixed {
            at: self.t.pos.get(),
        });
    }
}

macro_rules! fixed {
    ($($method:ident = $size:expr),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.fixed($size);
            let vis = self.visitor(v, None);
            self.de.$method(vis)
        }
    )*};
}

macro_rules! prefixed {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.prefixed();
            let vis = self.visitor(v, None);
            self.de.$method(vis)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, '_, D> {
    type Error = D::Error;

    fixed!(
        deserialize_bool = 1,
        deserialize_i8 = 1,
        deserialize_u8 = 1,
        deserialize_i16 = 2,
        deserialize_u16 = 2,
        deserialize_i32 = 4,
        deserialize_u32 = 4,
        deserialize_f32 = 4,
        deserialize_i64 = 8,
        deserialize_u64 = 8,
        deserialize_f64 = 8,
        deserialize_i128 = 16,
        deserialize_u128 = 16,
        deserialize_char = 1,
        deserialize_option = 1,
        deserialize_identifier = 4,
    );
    prefixed!(
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_seq,
        deserialize_map,
    );

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_any(vis)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_ignored_any(vis)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_unit(vis)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_unit_struct(name, vis)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_newtype_struct(name, vis)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_tuple(len, vis)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, None);
        self.de.deserialize_tuple_struct(name, len, vis)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let vis = self.visitor(v, Some(fields));
        self.de.deserialize_struct(name, fields, vis)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        // bincode reads the u32 variant tag first.
        self.fixed(4);
        let vis = self.visitor(v, Some(variants));
        self.de.deserialize_enum(name, variants, vis)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Wraps a seed so the value it deserializes goes through [`De`].
struct Seed<'t, 'i, S> {
    seed: S,
    t: &'t Track<'i>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, '_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(De { de, t: self.t })
    }
}

/// Wraps a visitor so nested access (sequences, enums, options) stays tracked. `names` are
/// a struct's field names or an enum's variant names.
struct Vis<'t, 'i, V> {
    v: V,
    t: &'t Track<'i>,
    names: Option<&'static [&'static str]>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, x: $ty) -> Result<V::Value, E> {
            self.v.$method(x)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.v.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_some(De { de, t: self.t })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_newtype_struct(De { de, t: self.t })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let of = seq.size_hint();
        self.v.visit_seq(Seq {
            seq,
            t: self.t,
            names: self.names,
            index: 0,
            of,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.v.visit_map(Map {
            map,
            t: self.t,
            index: 0,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.v.visit_enum(Enum {
            data,
            t: self.t,
            names: self.names,
        })
    }
}

/// A struct's fields or a sequence's elements; each pushes its name while it is read.
struct Seq<'t, 'i, A> {
    seq: A,
    t: &'t Track<'i>,
    names: Option<&'static [&'static str]>,
    index: usize,
    of: Option<usize>,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, '_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let i = self.index;
        match self.names.and_then(|n| n.get(i)) {
            Some(name) => self.t.push((*name).to_string(), None),
            None => self.t.push(format!("[{i}]"), self.of),
        }
        // On an error the segment stays: it is where the failure is.
        let value = self.seq.next_element_seed(Seed { seed, t: self.t })?;
        self.t.pop();
        self.index += 1;
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// A map's entries (Cairn's canonical types hold none, but bincode can encode them).
struct Map<'t, 'i, A> {
    map: A,
    t: &'t Track<'i>,
    index: usize,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.t.push(format!("[key {}]", self.index), None);
        let key = self.map.next_key_seed(Seed { seed, t: self.t })?;
        self.t.pop();
        Ok(key)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.t.push(format!("[value {}]", self.index), None);
        let value = self.map.next_value_seed(Seed { seed, t: self.t })?;
        self.t.pop();
        self.index += 1;
        Ok(value)
    }
}

/// An enum: after its tag is read, the variant's name is pushed while its content is read.
struct Enum<'t, 'i, A> {
    data: A,
    t: &'t Track<'i>,
    names: Option<&'static [&'static str]>,
}

impl<'de, 't, 'i, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'t, 'i, A> {
    type Error = A::Error;
    type Variant = Variant<'t, 'i, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let tag_at = self.t.pos.get();
        let (value, variant) = self.data.variant_seed(seed)?;
        // bincode's tag is a u32 index into the variant names.
        let tag = self
            .t
            .input
            .get(tag_at..tag_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let name = match (tag, self.names) {
            (Some(tag), Some(names)) => names
                .get(tag as usize)
                .map_or_else(|| format!("<variant {tag}>"), |n| (*n).to_string()),
            (Some(tag), None) => format!("<variant {tag}>"),
            _ => "<variant>".to_string(),
        };
        // A variant's fields are named after it: `payload.Transfer.amount`.
        self.t.push(name, None);
        Ok((
            value,
            Variant {
                v: variant,
                t: self.t,
            },
        ))
    }
}

struct Variant<'t, 'i, A> {
    v: A,
    t: &'t Track<'i>,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, '_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.v.unit_variant()?;
        self.t.pop();
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let value = self.v.newtype_variant_seed(Seed { seed, t: self.t })?;
        self.t.pop();
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        let vis = Vis {
            v,
            t: self.t,
            names: None,
        };
        let value = self.v.tuple_variant(len, vis)?;
        self.t.pop();
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        let vis = Vis {
            v,
            t: self.t,
            names: Some(fields),
        };
        let value = self.v.struct_variant(fields, vis)?;
        self.t.pop();
        Ok(value)
    }
}
