//! Electron asar archives (`resources/app.asar`): the header is read and every file's bytes
//! are located in the data that follows it, each offset and size checked against the data
//! before use.
//!
//! Layout, as Chromium's Pickle writes it: u32 LE 4 (the size pickle's payload), u32 LE
//! `header_size` (the header pickle's length), then the header pickle: u32 LE payload
//! length, u32 LE JSON length, the JSON (padded to 4 bytes). File data starts at
//! `8 + header_size`; each file's `"offset"` (a decimal string) counts from there. Files
//! marked `"unpacked": true` are stored beside the archive in `app.asar.unpacked/`.

use std::ops::Range;

use serde_json::Value;

/// One file whose bytes are in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsarFile {
    /// Path inside the archive, `/`-separated, without a leading `/`.
    pub path: String,
    /// Where its bytes are in the archive's data.
    pub range: Range<usize>,
    pub executable: bool,
}

/// Why an archive cannot be read: `offset` is the byte of the archive the field is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsarError {
    pub offset: u64,
    pub detail: String,
}

fn error(offset: usize, detail: String) -> AsarError {
    AsarError { offset: offset as u64, detail }
}

fn le32(data: &[u8], at: usize) -> Option<usize> {
    let raw = data.get(at..at + 4)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?) as usize)
}

/// True when `head` starts like an asar archive: a size pickle whose payload is 4 bytes.
pub fn looks_like_asar(head: &[u8]) -> bool {
    head.len() >= 8 && head[..4] == [4, 0, 0, 0]
}

/// The files stored in the archive (links, folders and unpacked files carry no bytes here).
pub fn files(data: &[u8]) -> Result<Vec<AsarFile>, AsarError> {
    if data.len() < 16 {
        return Err(error(0, format!("{} bytes: the size and header pickles need at least 16", data.len())));
    }
    let size_payload = le32(data, 0).unwrap_or(0);
    if size_payload != 4 {
        return Err(error(0, format!("size pickle payload is {size_payload} bytes, asar writes 4")));
    }
    let header_size = le32(data, 4).unwrap_or(0);
    let data_start = 8usize.saturating_add(header_size);
    if data_start > data.len() {
        return Err(error(
            4,
            format!("header_size {header_size} runs past the end of the archive ({} bytes)", data.len()),
        ));
    }
    let payload = le32(data, 8).unwrap_or(0);
    if payload.saturating_add(4) > header_size {
        return Err(error(8, format!("header pickle payload {payload} bytes does not fit header_size {header_size}")));
    }
    let json_len = le32(data, 12).unwrap_or(0);
    if json_len.saturating_add(4) > payload {
        return Err(error(12, format!("header JSON length {json_len} does not fit the pickle payload {payload}")));
    }
    let json = &data[16..16 + json_len];
    let header: Value = serde_json::from_slice(json)
        .map_err(|err| error(16, format!("header JSON (bytes 16..{}) does not parse: {err}", 16 + json_len)))?;
    let mut out = Vec::new();
    let data_len = data.len() - data_start;
    walk(&header, "", data_start, data_len, &mut out)?;
    Ok(out)
}

/// One folder node (`{"files": {...}}`): its files, and its folders recursively.
fn walk(
    node: &Value,
    prefix: &str,
    data_start: usize,
    data_len: usize,
    out: &mut Vec<AsarFile>,
) -> Result<(), AsarError> {
    let where_ = if prefix.is_empty() { "the root" } else { prefix };
    let Some(children) = node.get("files").and_then(Value::as_object) else {
        return Err(error(16, format!("header JSON: {where_} has no \"files\" object")));
    };
    for (name, child) in children {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(error(16, format!("header JSON: {where_} holds an entry named {name:?}")));
        }
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if child.get("files").is_some() {
            walk(child, &path, data_start, data_len, out)?;
            continue;
        }
        if child.get("link").is_some() || child.get("unpacked").and_then(Value::as_bool) == Some(true) {
            // A link names another entry, checked as itself; an unpacked file is a plain
            // file in app.asar.unpacked/, walked with the folder.
            continue;
        }
        let size = child
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| error(16, format!("header JSON: {path}: \"size\" is missing or not a whole number")))?;
        let offset = match child.get("offset") {
            Some(Value::String(text)) => text.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| error(16, format!("header JSON: {path}: \"offset\" is missing or not a decimal number")))?;
        let end = offset.checked_add(size).filter(|&end| end <= data_len as u64).ok_or_else(|| {
            error(
                data_start,
                format!(
                    "{path}: offset {offset} + size {size} runs past the end of the data \
                     ({data_len} bytes from byte {data_start})"
                ),
            )
        })?;
        let range = data_start + offset as usize..data_start + end as usize;
        let executable = child.get("executable").and_then(Value::as_bool) == Some(true);
        out.push(AsarFile { path, range, executable });
    }
    Ok(())
}
