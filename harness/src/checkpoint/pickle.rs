//! A minimal pickle virtual machine: exactly the opcodes `torch.save` emits
//! for state dicts (protocols 2–5), no arbitrary object construction.
//!
//! Globals are never imported; `REDUCE`/`NEWOBJ`/`BUILD` on a global produce
//! [`Value::Call`] nodes that the checkpoint layer interprets
//! (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`, …).
//!
//! May use: nothing else of the crate.

use std::cell::RefCell;
use std::rc::Rc;

/// Errors of the pickle VM.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("pickle: unexpected end of data at byte {0}")]
    Eof(usize),
    #[error("pickle: unsupported opcode 0x{op:02x} at byte {pos}")]
    UnsupportedOpcode { op: u8, pos: usize },
    #[error("pickle: stack underflow at byte {0}")]
    StackUnderflow(usize),
    #[error("pickle: memo key {0} not found")]
    MissingMemo(u32),
    #[error("pickle: malformed data at byte {pos}: {what}")]
    Malformed { pos: usize, what: &'static str },
    #[error("pickle: persistent id requested but no persistent loader is set")]
    NoPersistentLoader,
}

/// A shared, mutable list (pickle mutates lists after memoizing them).
pub type ListRef = Rc<RefCell<Vec<Value>>>;
/// A shared, mutable dict keeping insertion order.
pub type DictRef = Rc<RefCell<Vec<(Value, Value)>>>;

/// A value on the pickle stack.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(ListRef),
    Dict(DictRef),
    /// `module.name` reference (GLOBAL / STACK_GLOBAL), never imported.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` from REDUCE or NEWOBJ, with state from BUILD.
    Call {
        callable: Box<Value>,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
    /// Result of the persistent loader for a BINPERSID / PERSID id.
    Persistent(Box<Value>),
    /// Stack marker (MARK).
    Mark,
}

impl Value {
    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The integer, if this is an `Int` (or `Bool`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
    /// Elements of a tuple or list.
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(v) => Some(v.clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
}

/// Runs the pickle VM over `data` starting at `pos`; returns the unpickled
/// value and the position right after the STOP opcode (legacy torch files
/// concatenate several pickles).
pub fn unpickle(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: start,
        stack: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    let value = vm.run()?;
    Ok((value, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: std::collections::HashMap<u32, Value>,
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Eof(self.pos))?;
        if end > self.data.len() {
            return Err(PickleError::Eof(self.pos));
        }
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or(PickleError::Eof(self.pos))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let pos = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map(Value::Str)
            .map_err(|_| PickleError::Malformed {
                pos,
                what: "invalid utf-8 string",
            })
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack
            .pop()
            .ok_or(PickleError::StackUnderflow(self.pos))
    }
    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        self.stack
            .last_mut()
            .ok_or(PickleError::StackUnderflow(pos))
    }
    /// Pops everything above the last MARK (and the mark itself).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let idx = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or(PickleError::StackUnderflow(self.pos))?;
        let items = self.stack.split_off(idx + 1);
        self.stack.pop();
        Ok(items)
    }
    fn memo_get(&self, key: u32) -> Result<Value, PickleError> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or(PickleError::MissingMemo(key))
    }
    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let pos = self.pos;
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            // OrderedDict() built by REDUCE, then filled with SETITEMS.
            Value::Call { state, .. } => {
                let dict = state.get_or_insert_with(|| {
                    Box::new(Value::Dict(Rc::new(RefCell::new(Vec::new()))))
                });
                if let Value::Dict(d) = dict.as_ref() {
                    let mut d = d.borrow_mut();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            _ => Err(PickleError::Malformed {
                pos,
                what: "SETITEM(S) on a non-dict",
            }),
        }
    }
    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let pos = self.pos;
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            _ => Err(PickleError::Malformed {
                pos,
                what: "APPEND(S) on a non-list",
            }),
        }
    }

    /// The VM loop: reads one opcode at a time and hands it to the method
    /// for its family; STOP returns the top of the stack.
    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op_pos = self.pos;
            let op = self.u8()?;
            match op {
                b'.' => return self.pop(), // STOP
                0x80 | 0x95 | b'(' | b'0' | b'1' | b'2' => self.control_op(op, op_pos)?,
                b'N' | 0x88 | 0x89 | b'J' | b'K' | b'M' | 0x8a | b'I' | b'G' => {
                    self.scalar_op(op, op_pos)?
                }
                b'X' | 0x8c | 0x8d | b'U' | b'T' | b'C' | b'B' => self.text_op(op, op_pos)?,
                b'}' | b']' | b')' | b't' | b'l' | b'd' | 0x85 | 0x86 | 0x87 | 0x8f | 0x91 => {
                    self.build_container_op(op, op_pos)?
                }
                b's' | b'u' | b'a' | b'e' | 0x90 => self.fill_container_op(op, op_pos)?,
                b'q' | b'r' | 0x94 | b'h' | b'j' => self.memo_op(op, op_pos)?,
                b'c' | 0x93 | b'R' | 0x81 | b'b' | b'Q' | b'P' => self.object_op(op, op_pos)?,
                op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
            }
        }
    }

    /// Framing and stack manipulation: PROTO, FRAME, MARK, POP, POP_MARK, DUP.
    #[inline]
    fn control_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.u64()?; // FRAME
            }
            b'(' => self.stack.push(Value::Mark),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// None, booleans, integers and floats.
    #[inline]
    fn scalar_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(i64::from(v)));
            }
            0x8a => {
                let v = self.long1(op_pos)?;
                self.stack.push(Value::Int(v));
            }
            b'I' => {
                let l = self.line()?;
                let v = match l.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    s => Value::Int(s.parse().map_err(|_| PickleError::Malformed {
                        pos: op_pos,
                        what: "INT",
                    })?),
                };
                self.stack.push(v);
            }
            b'G' => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// LONG1's operand: little-endian two's complement, at most 64 bits.
    fn long1(&mut self, op_pos: usize) -> Result<i64, PickleError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?.to_vec();
        if n > 8 {
            return Err(PickleError::Malformed {
                pos: op_pos,
                what: "LONG1 wider than 64 bits",
            });
        }
        let mut v: i64 = 0;
        for (i, byte) in b.iter().enumerate() {
            v |= i64::from(*byte) << (8 * i);
        }
        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
            v -= 1i64 << (8 * n);
        }
        Ok(v)
    }

    /// Unicode strings, py2 strings (kept as text) and bytes.
    #[inline]
    fn text_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b'X' => {
                let n = self.u32()? as usize;
                let v = self.string(n)?;
                self.stack.push(v);
            }
            0x8c => {
                let n = self.u8()? as usize;
                let v = self.string(n)?;
                self.stack.push(v);
            }
            0x8d => {
                let n = self.u64()? as usize;
                let v = self.string(n)?;
                self.stack.push(v);
            }
            b'U' => {
                // SHORT_BINSTRING (py2 str): keep as text
                let n = self.u8()? as usize;
                let text = String::from_utf8_lossy(self.take(n)?).into_owned();
                self.stack.push(Value::Str(text));
            }
            b'T' => {
                let n = self.u32()? as usize;
                let text = String::from_utf8_lossy(self.take(n)?).into_owned();
                self.stack.push(Value::Str(text));
            }
            b'C' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(Value::Bytes(b));
            }
            b'B' => {
                let n = self.u32()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(Value::Bytes(b));
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// New dicts, lists, tuples and sets: empty, from the items above MARK,
    /// or from the top one to three values.
    #[inline]
    fn build_container_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b'}' => self
                .stack
                .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            b']' => self
                .stack
                .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let mut pairs = Vec::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            0x85 => {
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = self.pop()?;
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = self.pop()?;
                let b = self.pop()?;
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a, b, c]));
            }
            0x8f => self
                .stack
                .push(Value::List(Rc::new(RefCell::new(Vec::new())))), // EMPTY_SET
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items)); // FROZENSET
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// Items added to the dict, list or set on top of the stack:
    /// SETITEM(S), APPEND(S), ADDITEMS.
    #[inline]
    fn fill_container_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                self.append(items)?; // ADDITEMS
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// The memo: BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET.
    #[inline]
    fn memo_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b'q' => {
                let k = u32::from(self.u8()?);
                self.memo_put(k)?;
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = u32::from(self.u8()?);
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            b'j' => {
                let k = self.u32()?;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }

    /// Globals, calls and persistent ids: GLOBAL, STACK_GLOBAL, REDUCE,
    /// NEWOBJ, BUILD, BINPERSID, PERSID (nothing is imported or called).
    #[inline]
    fn object_op(&mut self, op: u8, op_pos: usize) -> Result<(), PickleError> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global { module, name });
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        self.stack.push(Value::Global { module, name })
                    }
                    _ => {
                        return Err(PickleError::Malformed {
                            pos: op_pos,
                            what: "STACK_GLOBAL needs two strings",
                        })
                    }
                }
            }
            b'R' | 0x81 => {
                // REDUCE / NEWOBJ
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = match args {
                    Value::Tuple(a) => a,
                    _ => {
                        return Err(PickleError::Malformed {
                            pos: op_pos,
                            what: "REDUCE args must be a tuple",
                        })
                    }
                };
                self.stack.push(Value::Call {
                    callable: Box::new(callable),
                    args,
                    state: None,
                });
            }
            b'b' => {
                // BUILD: attach state; for dicts (OrderedDict metadata) it is ignored.
                let st = self.pop()?;
                if let Value::Call { state, .. } = self.top()? {
                    if state.is_none() {
                        *state = Some(Box::new(st));
                    }
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(Value::Persistent(Box::new(pid)));
            }
            b'P' => {
                let pid = self.line()?;
                self.stack
                    .push(Value::Persistent(Box::new(Value::Str(pid))));
            }
            op => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_dict_protocol2() {
        // pickle.dumps({'a': 1, 'b': [2, -3]}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02J\xfd\xff\xff\xffeu.";
        let (v, end) = unpickle(data, 0).unwrap();
        assert_eq!(end, data.len());
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d[0].0.as_str(), Some("a"));
        assert_eq!(d[0].1.as_int(), Some(1));
        let seq = d[1].1.as_seq().unwrap();
        assert_eq!(seq[1].as_int(), Some(-3));
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(unpickle(b"\x80\x02}q\x00(X\x01", 0).is_err());
    }
}
