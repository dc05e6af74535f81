//! flychat's web pages and scripts, embedded in the binary so that the chat works offline and from any mount.
//!
//! The pages are spout's own, written after what the original's README and code describe (a join form; a chat
//! page with the room's last 50 messages rendered by the server, a form that posts `from` and `text` without
//! leaving the page, and live messages from an `EventSource` on the room's stream, told apart by
//! `provisionalId`). The scripts are served under the original's names; they are small, readable and
//! unminified: `url-polyfill.min.js` and `eventsource.min.js` fill in `URLSearchParams` and `EventSource` only
//! where a browser lacks them, and `reconnecting-eventsource.js` reopens a stream the browser gave up on, resuming
//! with `?lastEventId=`.
//!
//! Every URL a page uses starts with the mount (`{{mount}}`), so the pages work at the root of a flychat listener
//! and under `/flychat` on a native one. Everything a client supplied (room, user, messages) is HTML-escaped
//! where it is written into a page, in text and in attributes alike; the scripts only ever set `textContent`.

use serde::Deserialize;

const JOIN: &str = include_str!("pages/join.html");
const CHAT: &str = include_str!("pages/chat.html");

/// The scripts under `/js/`, by file name.
const SCRIPTS: [(&str, &str); 3] = [
    (
        "url-polyfill.min.js",
        include_str!("pages/js/url-polyfill.min.js"),
    ),
    (
        "eventsource.min.js",
        include_str!("pages/js/eventsource.min.js"),
    ),
    (
        "reconnecting-eventsource.js",
        include_str!("pages/js/reconnecting-eventsource.js"),
    ),
];

/// The script at `/js/{name}`.
pub fn script(name: &[u8]) -> Option<&'static str> {
    SCRIPTS
        .iter()
        .find(|(file, _)| file.as_bytes() == name)
        .map(|(_, body)| *body)
}

/// The join page: static, its form loads the page it is on with `?user=NAME`.
pub fn join_page() -> &'static str {
    JOIN
}

/// What the chat page shows of one stored message (read back from its JSON).
#[derive(Deserialize)]
struct Shown {
    #[serde(rename = "provisionalId")]
    provisional_id: String,
    from: String,
    text: String,
    date: String,
}

/// What the chat page is made of.
pub struct Chat<'a> {
    pub mount: &'a str,
    /// The room as a path segment (`form::canonical_room`): ASCII, used as is in the page's URLs.
    pub room: &'a str,
    pub user: &'a str,
    /// The id of the last message rendered: the page's stream starts after it.
    pub last_event_id: u64,
}

impl Chat<'_> {
    /// The page, with `messages` (each a stored message's JSON, oldest first) rendered into it.
    pub fn render<'m>(&self, messages: impl Iterator<Item = &'m [u8]>) -> String {
        let mut list = String::new();
        for json in messages {
            // Stored messages are spout's own JSON: one that does not read back would be a bug, not input.
            let Ok(message) = serde_json::from_slice::<Shown>(json) else {
                log::error!("flychat: a stored message does not parse");
                continue;
            };
            list.push_str("<li class=\"message\" data-provisional-id=\"");
            escape(&mut list, &message.provisional_id);
            list.push_str("\" title=\"");
            escape(&mut list, &message.date);
            list.push_str("\"><b class=\"from\">");
            escape(&mut list, &message.from);
            list.push_str("</b>: <span class=\"text\">");
            escape(&mut list, &message.text);
            list.push_str("</span></li>\n");
        }
        let last_event_id = self.last_event_id.to_string();
        fill(CHAT, |name, out| match name {
            "mount" => escape(out, self.mount),
            "room" => escape(out, self.room),
            "user" => escape(out, self.user),
            "last_event_id" => out.push_str(&last_event_id),
            "messages" => out.push_str(&list),
            _ => {}
        })
    }
}

/// Copies `template`, replacing each `{{name}}` with what `value` writes for it.
fn fill(template: &str, mut value: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (before, marker) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = marker.find("}}") else {
            rest = marker;
            break;
        };
        value(marker.get(2..end).unwrap_or_default(), &mut out);
        rest = marker.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Appends `text` with `& < > " '` escaped: safe in element content and in quoted attribute values.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_chat_page_is_filled() {
        let page = Chat {
            mount: "/flychat",
            room: "a%20b",
            user: "u",
            last_event_id: 7,
        }
        .render(std::iter::empty());
        assert!(!page.contains("{{"), "{page}");
        assert!(page.contains("data-last-event-id=\"7\""));
        assert!(page.contains("src=\"/flychat/js/eventsource.min.js\""));
        assert!(page.contains("action=\"/flychat/rooms/a%20b/messages/\""));
    }

    #[test]
    fn client_text_is_escaped_everywhere_it_is_written() {
        let json = br#"{"id":1,"provisionalId":"p\"><i>","from":"<b>al</b>","text":"x & 'y' \"z\"","date":"d"}"#;
        let page = Chat {
            mount: "",
            room: "r'\"<",
            user: "\"><script>alert(1)</script>",
            last_event_id: 1,
        }
        .render([&json[..]].into_iter());
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<b>al</b>") && !page.contains("<i>"));
        assert!(page.contains("<b class=\"from\">&lt;b&gt;al&lt;/b&gt;</b>: "));
        assert!(page.contains("<span class=\"text\">x &amp; &#39;y&#39; &quot;z&quot;</span>"));
        assert!(page.contains("data-room=\"r&#39;&quot;&lt;\""));
    }

    #[test]
    fn fill_leaves_unknown_and_unclosed_markers() {
        let out = fill("a {{x}} b {{y}} c {{open", |name, out| {
            if name == "x" {
                out.push('X');
            }
        });
        assert_eq!(out, "a X b  c {{open");
    }

    #[test]
    fn scripts_are_found_by_their_names_only() {
        for (name, _) in SCRIPTS {
            assert!(script(name.as_bytes()).is_some_and(|s| s.contains("(function (global)")));
        }
        assert!(script(b"chat.html").is_none());
        assert!(script(b"").is_none());
    }
}
