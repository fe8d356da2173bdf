//! A small Thrift codec: the strict binary protocol (`TBinaryProtocol`, strict write) over the
//! framed transport (`TFramedTransport`, u32 big-endian length prefix), as ModelDB v1 speaks
//! it. Writing is by hand, field by field, in ascending id order like the Python client; reading
//! decodes any reply into a generic [`TValue`] tree.

use std::collections::BTreeMap;

/// Thrift wire type ids.
pub mod ttype {
    /// STOP marker.
    pub const STOP: u8 = 0;
    /// bool.
    pub const BOOL: u8 = 2;
    /// i8.
    pub const BYTE: u8 = 3;
    /// double.
    pub const DOUBLE: u8 = 4;
    /// i16.
    pub const I16: u8 = 6;
    /// i32.
    pub const I32: u8 = 8;
    /// i64.
    pub const I64: u8 = 10;
    /// string / binary.
    pub const STRING: u8 = 11;
    /// struct.
    pub const STRUCT: u8 = 12;
    /// map.
    pub const MAP: u8 = 13;
    /// set.
    pub const SET: u8 = 14;
    /// list.
    pub const LIST: u8 = 15;
}

/// Message types.
pub mod mtype {
    /// A call.
    pub const CALL: u8 = 1;
    /// A reply.
    pub const REPLY: u8 = 2;
    /// A `TApplicationException`.
    pub const EXCEPTION: u8 = 3;
}

const VERSION_1: u32 = 0x8001_0000;

/// Builds one message.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a CALL message for `method` with seqid 0 (as the Python client always sends).
    pub fn call(method: &str) -> Self {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&(VERSION_1 | mtype::CALL as u32).to_be_bytes());
        w.string(method);
        w.buf.extend_from_slice(&0i32.to_be_bytes());
        w
    }
    /// Starts a message of any type (used by tests to build replies).
    pub fn message(method: &str, kind: u8, seqid: i32) -> Self {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&(VERSION_1 | kind as u32).to_be_bytes());
        w.string(method);
        w.buf.extend_from_slice(&seqid.to_be_bytes());
        w
    }
    /// A field header.
    pub fn field(&mut self, ty: u8, id: i16) -> &mut Self {
        self.buf.push(ty);
        self.buf.extend_from_slice(&id.to_be_bytes());
        self
    }
    /// The STOP byte that ends a struct.
    pub fn stop(&mut self) -> &mut Self {
        self.buf.push(ttype::STOP);
        self
    }
    /// An i32 value.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A double value.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        self
    }
    /// A bool value.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }
    /// A string value (length in bytes, then UTF-8).
    pub fn string(&mut self, v: &str) -> &mut Self {
        let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&v.as_bytes()[..len as usize]);
        self
    }
    /// A list header.
    pub fn list(&mut self, elem: u8, count: usize) -> &mut Self {
        self.buf.push(elem);
        self.buf.extend_from_slice(&(count.min(i32::MAX as usize) as i32).to_be_bytes());
        self
    }
    /// A map header.
    pub fn map(&mut self, key: u8, value: u8, count: usize) -> &mut Self {
        self.buf.push(key);
        self.buf.push(value);
        self.buf.extend_from_slice(&(count.min(i32::MAX as usize) as i32).to_be_bytes());
        self
    }
    /// Field + i32.
    pub fn f_i32(&mut self, id: i16, v: i32) -> &mut Self {
        self.field(ttype::I32, id).i32(v)
    }
    /// Field + string.
    pub fn f_str(&mut self, id: i16, v: &str) -> &mut Self {
        self.field(ttype::STRING, id).string(v)
    }
    /// Field + double.
    pub fn f_f64(&mut self, id: i16, v: f64) -> &mut Self {
        self.field(ttype::DOUBLE, id).f64(v)
    }
    /// Field + bool.
    pub fn f_bool(&mut self, id: i16, v: bool) -> &mut Self {
        self.field(ttype::BOOL, id).bool(v)
    }
    /// The message bytes (without the frame length).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// The message with its 4-byte frame length in front.
    pub fn into_frame(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 4);
        out.extend_from_slice(&(self.buf.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.buf);
        out
    }
}

/// A decoded Thrift value.
#[derive(Debug, Clone, PartialEq)]
pub enum TValue {
    /// bool.
    Bool(bool),
    /// i8.
    Byte(i8),
    /// i16.
    I16(i16),
    /// i32.
    I32(i32),
    /// i64.
    I64(i64),
    /// double.
    Double(f64),
    /// string or binary.
    Str(Vec<u8>),
    /// struct: field id → value.
    Struct(BTreeMap<i16, TValue>),
    /// list or set.
    List(Vec<TValue>),
    /// map.
    Map(Vec<(TValue, TValue)>),
}

impl TValue {
    /// Field `id` of a struct.
    pub fn field(&self, id: i16) -> Option<&TValue> {
        match self {
            TValue::Struct(m) => m.get(&id),
            _ => None,
        }
    }
    /// As i32.
    pub fn as_i32(&self) -> Option<i32> {
        match self {
            TValue::I32(v) => Some(*v),
            _ => None,
        }
    }
    /// As a (lossy) UTF-8 string.
    pub fn as_str(&self) -> Option<String> {
        match self {
            TValue::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
    /// As bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            TValue::Bool(v) => Some(*v),
            _ => None,
        }
    }
    /// As f64.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TValue::Double(v) => Some(*v),
            _ => None,
        }
    }
    /// As a list.
    pub fn as_list(&self) -> &[TValue] {
        match self {
            TValue::List(v) => v,
            _ => &[],
        }
    }
    /// As a map.
    pub fn as_map(&self) -> &[(TValue, TValue)] {
        match self {
            TValue::Map(v) => v,
            _ => &[],
        }
    }
    /// String field `id`, or "".
    pub fn str_field(&self, id: i16) -> String {
        self.field(id).and_then(TValue::as_str).unwrap_or_default()
    }
}

/// A reply that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Thrift message at byte {offset}: {message}")]
pub struct DecodeError {
    /// Byte offset in the message.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Method name.
    pub name: String,
    /// `mtype::CALL`, `REPLY` or `EXCEPTION`.
    pub kind: u8,
    /// Sequence id.
    pub seqid: i32,
    /// The body struct (args, result or `TApplicationException`).
    pub body: TValue,
}

const MAX_DEPTH: usize = 64;

/// Reads messages.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    nodes: usize,
}

/// Most values one reply may hold. Every value takes at least one byte, but a decoded value
/// takes tens of bytes of memory, so a frame near `MAX_FRAME` of one-byte values would need
/// gigabytes; real replies hold a few thousand.
pub const MAX_NODES: usize = 1_000_000;

impl<'a> Reader<'a> {
    /// A reader over one message (without frame length).
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, nodes: 0 }
    }
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.pos, message: message.into() })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self.fail(format!("needs {n} more bytes, has {}", self.buf.len() - self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        if n < 0 {
            return self.fail(format!("negative length {n}"));
        }
        let n = n as usize;
        if n > self.buf.len() - self.pos {
            return self.fail(format!("length {n} exceeds the message"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    /// Reads a whole message: strict header, name, seqid, body struct.
    pub fn message(mut self) -> Result<Message, DecodeError> {
        let header = self.i32()? as u32;
        if header & 0xffff_0000 != VERSION_1 {
            return self.fail(format!("bad version header {header:#010x} (strict binary protocol expected)"));
        }
        let kind = (header & 0xff) as u8;
        let name =
            String::from_utf8(self.bytes()?).map_err(|_| DecodeError { offset: self.pos, message: "method name is not UTF-8".into() })?;
        let seqid = self.i32()?;
        let body = self.value(ttype::STRUCT, 0)?;
        if self.pos != self.buf.len() {
            return self.fail(format!("{} trailing bytes", self.buf.len() - self.pos));
        }
        Ok(Message { name, kind, seqid, body })
    }

    fn value(&mut self, ty: u8, depth: usize) -> Result<TValue, DecodeError> {
        if depth > MAX_DEPTH {
            return self.fail("nesting too deep");
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.fail(format!("more than {MAX_NODES} values"));
        }
        Ok(match ty {
            ttype::BOOL => TValue::Bool(self.u8()? != 0),
            ttype::BYTE => TValue::Byte(self.u8()? as i8),
            ttype::I16 => TValue::I16(self.i16()?),
            ttype::I32 => TValue::I32(self.i32()?),
            ttype::I64 => TValue::I64(self.i64()?),
            ttype::DOUBLE => TValue::Double(f64::from_bits(self.i64()? as u64)),
            ttype::STRING => TValue::Str(self.bytes()?),
            ttype::STRUCT => {
                let mut m = BTreeMap::new();
                loop {
                    let fty = self.u8()?;
                    if fty == ttype::STOP {
                        break;
                    }
                    let id = self.i16()?;
                    let v = self.value(fty, depth + 1)?;
                    m.insert(id, v);
                }
                TValue::Struct(m)
            }
            ttype::LIST | ttype::SET => {
                let ety = self.u8()?;
                let n = self.len_items()?;
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                TValue::List(v)
            }
            ttype::MAP => {
                let kty = self.u8()?;
                let vty = self.u8()?;
                let n = self.len_items()?;
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let k = self.value(kty, depth + 1)?;
                    let val = self.value(vty, depth + 1)?;
                    v.push((k, val));
                }
                TValue::Map(v)
            }
            other => return self.fail(format!("unknown type id {other}")),
        })
    }

    fn len_items(&mut self) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        if n < 0 {
            return self.fail(format!("negative count {n}"));
        }
        // Every element takes at least one byte (except void-ish types, which Thrift lacks).
        if n as usize > self.buf.len() - self.pos {
            return self.fail(format!("count {n} exceeds the message"));
        }
        Ok(n as usize)
    }
}

/// Decodes one message.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    Reader::new(buf).message()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let mut w = Writer::call("m");
        w.field(ttype::STRUCT, 1).f_i32(1, -1).f_str(2, "é").stop();
        w.stop();
        let bytes = w.into_bytes();
        let m = decode(&bytes).unwrap();
        assert_eq!(m.name, "m");
        assert_eq!(m.kind, mtype::CALL);
        assert_eq!(m.body.field(1).unwrap().field(1).unwrap().as_i32(), Some(-1));
        assert_eq!(m.body.field(1).unwrap().str_field(2), "é");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        assert!(decode(&[0, 0, 0, 1]).is_err());
        // A huge list count must not allocate.
        let mut w = Writer::message("x", mtype::REPLY, 0);
        w.field(ttype::LIST, 0).list(ttype::I32, i32::MAX as usize);
        assert!(decode(&w.into_bytes()).is_err());
    }

    #[test]
    fn replies_with_too_many_values_are_refused() {
        // A list of 1,500,000 bools: 1.5 MB on the wire, far more decoded.
        let n = MAX_NODES + 500_000;
        let mut b = Vec::new();
        b.extend_from_slice(&(VERSION_1 | 2).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.push(b'x');
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(ttype::LIST);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.push(ttype::BOOL);
        b.extend_from_slice(&(n as i32).to_be_bytes());
        b.extend(std::iter::repeat_n(1u8, n));
        b.push(ttype::STOP);
        let e = decode(&b).expect_err("refused");
        assert!(e.message.contains("values"), "{e}");
    }

    #[test]
    fn frame_has_length_prefix() {
        let f = Writer::call("ab").into_frame();
        assert_eq!(&f[..4], &((f.len() - 4) as u32).to_be_bytes());
    }
}
