//! The attenuation law as a differential property: when `child.is_subset_of(parent)`, every
//! call the child admits, the parent admits too. Delegation and issuance rely on it.
//!
//! The fuzz bytes drive a generator over a deliberately small universe (two servers, two
//! tools, strings over `a`, `b`, `/`, integers from -3 to 3, three member names, a few path
//! segments) so that subsets and admitted calls are common and the implication is
//! exercised, not vacuously true.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use writ_scope::{AuthorizationDetail, Call};

fn pick<'a, T>(u: &mut Unstructured<'_>, items: &'a [T]) -> Result<&'a T> {
    u.choose(items)
}

fn text(u: &mut Unstructured<'_>, alphabet: &[char], max: usize) -> Result<String> {
    let len = u.int_in_range(0..=max)?;
    (0..len).map(|_| pick(u, alphabet).copied()).collect()
}

fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::from(text(u, &['a', 'b', '/'], 3)?),
        1 => Value::from(u.int_in_range(-3_i64..=3)?),
        2 => json!(0.5),
        3 => Value::from(u.arbitrary::<bool>()?),
        4 => Value::Null,
        5 => {
            let len = u.int_in_range(0..=2)?;
            Value::from(
                (0..len)
                    .map(|_| value(u, depth - 1))
                    .collect::<Result<Vec<_>>>()?,
            )
        }
        _ => {
            let mut members = Map::new();
            for _ in 0..u.int_in_range(0..=2)? {
                let key = (*pick(u, &["k", "m", "n"])?).to_owned();
                members.insert(key, value(u, depth - 1)?);
            }
            Value::Object(members)
        }
    })
}

fn members(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let mut out = Map::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let key = (*pick(u, &["k", "m", "n"])?).to_owned();
        out.insert(key, constraint(u, depth - 1)?);
    }
    Ok(Value::Object(out))
}

fn constraint(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 6 } else { 8 };
    Ok(match u.int_in_range(0..=top)? {
        0 => json!("any"),
        1 => json!({ "exact": value(u, 1)? }),
        2 => {
            let len = u.int_in_range(1..=3)?;
            let values = (0..len).map(|_| value(u, 0)).collect::<Result<Vec<_>>>()?;
            json!({ "one_of": values })
        }
        3 => json!({ "prefix": text(u, &['a', 'b', '/'], 2)? }),
        4 => json!({ "glob": text(u, &['a', 'b', '/', '*', '?'], 4)? }),
        5 => {
            let mut range = Map::new();
            if u.arbitrary()? {
                range.insert("min".into(), Value::from(u.int_in_range(-3_i64..=3)?));
            }
            if u.arbitrary()? {
                range.insert("max".into(), Value::from(u.int_in_range(-3_i64..=3)?));
            }
            json!({ "range": range })
        }
        6 => json!({ "max_length": u.int_in_range(0_u64..=3)? }),
        7 => {
            let mut object = Map::new();
            object.insert("required".into(), members(u, depth)?);
            object.insert("optional".into(), members(u, depth)?);
            if u.arbitrary()? {
                object.insert("other".into(), constraint(u, depth - 1)?);
            }
            json!({ "object": object })
        }
        _ => json!({ "array": {
            "items": constraint(u, depth - 1)?,
            "max_items": u.int_in_range(0_u64..=3)?,
        }}),
    })
}

fn some_of(u: &mut Unstructured<'_>, items: &[&str], at_least: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in items {
        if u.arbitrary()? {
            out.push((*item).to_owned());
        }
    }
    if out.len() < at_least {
        out.push((*pick(u, items)?).to_owned());
    }
    Ok(out)
}

const SERVERS: [&str; 2] = ["files", "web"];
const TOOLS: [&str; 2] = ["read", "write"];
const MCP_METHODS: [&str; 4] = ["tools/list", "ping", "initialize", "resources/read"];
const HTTP_METHODS: [&str; 3] = ["GET", "POST", "DELETE"];
const LABELS: [&str; 2] = ["internal", "pii"];

fn pattern(u: &mut Unstructured<'_>) -> Result<String> {
    let mut out = String::new();
    for _ in 0..u.int_in_range(1..=3)? {
        out.push('/');
        out.push_str(pick(u, &["a", "b", "*", "a*", "?", "a;b", "*;*", "ab"])?);
    }
    Ok(out)
}

fn detail(u: &mut Unstructured<'_>) -> Result<Value> {
    let server = *pick(u, &SERVERS)?;
    Ok(match u.int_in_range(0..=2)? {
        0 => json!({
            "type": "mcp_tool_call", "server": server, "tool": pick(u, &TOOLS)?,
            "arguments": constraint(u, 2)?, "datatypes": some_of(u, &LABELS, 0)?,
        }),
        1 => json!({
            "type": "mcp_request", "server": server, "methods": some_of(u, &MCP_METHODS, 1)?,
        }),
        _ => {
            let mut detail = json!({
                "type": "http_request", "server": server,
                "methods": some_of(u, &HTTP_METHODS, 1)?, "path": pattern(u)?,
                "datatypes": some_of(u, &LABELS, 0)?,
            });
            if u.arbitrary()? {
                detail["query"] = constraint(u, 2)?;
            }
            detail
        }
    })
}

/// A detail from the generator, if it is one Writ accepts.
fn accepted(u: &mut Unstructured<'_>) -> Result<Option<AuthorizationDetail>> {
    let json = detail(u)?;
    Ok(serde_json::from_value::<AuthorizationDetail>(json)
        .ok()
        .filter(|detail| detail.validate().is_ok()))
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let Some(parent) = accepted(u)? else {
        return Ok(());
    };
    let Some(child) = accepted(u)? else {
        return Ok(());
    };
    if !child.is_subset_of(&parent) {
        return Ok(());
    }
    let server = *pick(u, &SERVERS)?;
    let arguments = value(u, 2)?;
    let mut path = String::new();
    for _ in 0..u.int_in_range(1..=3)? {
        path.push('/');
        path.push_str(pick(
            u,
            &["a", "b", "ab", "a;b", "..", "x", "", "a%20b", "*", "%2E"],
        )?);
    }
    let query = *pick(
        u,
        &[
            None,
            Some(""),
            Some("k=a"),
            Some("k=a&m=b"),
            Some("k=a&k=b"),
            Some("k"),
        ],
    )?;
    let call = match u.int_in_range(0..=2)? {
        0 => Call::McpToolCall {
            server,
            tool: pick(u, &TOOLS)?,
            arguments: &arguments,
        },
        1 => Call::McpRequest {
            server,
            method: pick(u, &MCP_METHODS)?,
        },
        _ => Call::HttpRequest {
            server,
            method: pick(u, &HTTP_METHODS)?,
            path: &path,
            query,
        },
    };
    if child.check(&call).is_ok() {
        assert!(
            parent.check(&call).is_ok(),
            "the child admits a call its parent refuses:\nchild {}\nparent {}\ncall {call:?}",
            serde_json::to_string(&child).unwrap(),
            serde_json::to_string(&parent).unwrap(),
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
