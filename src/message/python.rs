//! Python's own text of a value, as Celery produces it: `json.dumps` with its default separators and ASCII
//! escapes (kombu's JSON envelope), and `repr()` of the task's arguments with Celery's size cap (`argsrepr`,
//! `kwargsrepr`).

use serde::Serialize;
use serde_json::Value;
use std::io;

/// Celery's default cap on `argsrepr` / `kwargsrepr` (`argsrepr_maxsize`, `kwargsrepr_maxsize`).
const REPR_MAX: usize = 1024;

/// Serialises like Python's `json.dumps` with default arguments: `", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`.
pub fn python_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("JSON values always serialise");
    out
}

/// serde_json formatter reproducing Python's `json.dumps` defaults.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn truncate_repr(mut repr: String) -> String {
    if repr.len() > REPR_MAX {
        let mut cut = REPR_MAX;
        while !repr.is_char_boundary(cut) {
            cut -= 1;
        }
        repr.truncate(cut);
        repr.push_str("...");
    }
    repr
}

/// Python's `repr()` of the args tuple, e.g. `(2, 2)` or `(1,)`.
pub fn python_repr_tuple(args: &[Value]) -> String {
    let mut out = String::from("(");
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&python_repr(v));
    }
    if args.len() == 1 {
        out.push(',');
    }
    out.push(')');
    out
}

/// Python's `repr()` of a JSON value decoded by Python.
pub fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Value::String(s) => python_repr_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_repr_str(k), python_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

fn python_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
