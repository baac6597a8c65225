//! MQTT topic templates and the access rules of DESIGN.md section 3, as one pure function.
//!
//! | who | may publish (acc 2) | may subscribe (acc 4) / receive (acc 1) |
//! |---|---|---|
//! | device SN | data, status of SN | control of SN |
//! | owner user | control of SN | data, status of SN |
//! | service account | `$CONTROL/vesper/v1` | data, status of every device (`+` allowed in the SN level, also as `$share/GROUP/...`) |
//!
//! A subscribe filter is allowed only if every topic it can match is allowed: a device or user
//! filter with `+` or `#` can always match a topic outside its grant, so it is denied. Everything
//! not granted is denied.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::serial::SerialNumber;

/// The placeholder for the serial number in a topic template.
pub const SN_PLACEHOLDER: &str = "{sn}";

/// The topic on which the service account tells the broker plugin to kick or forget a login
/// (DESIGN.md section 3, revocation). Only the service account may publish there.
pub const CONTROL_TOPIC: &str = "$CONTROL/vesper/v1";

/// Longest topic or filter considered; anything longer is denied before it is parsed.
pub const MAX_TOPIC_LEN: usize = 1024;

/// Why a topic template is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("topic template `{0}` must contain `{SN_PLACEHOLDER}` as one whole level exactly once")]
    Placeholder(String),
    #[error(
        "topic template `{0}` must not contain the wildcards `+` or `#`, a NUL or start with `$`"
    )]
    Character(String),
    #[error("topic templates `{0}` and `{1}` are the same topic")]
    Duplicate(String, String),
}

/// A topic with one level that holds the serial number, e.g. `vesper/{sn}/data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicTemplate {
    text: String,
    sn_level: usize,
}

impl TryFrom<String> for TopicTemplate {
    type Error = TemplateError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.contains(['+', '#', '\0']) || text.starts_with('$') {
            return Err(TemplateError::Character(text));
        }
        let levels: Vec<&str> = text.split('/').collect();
        let mut placeholders = levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(SN_PLACEHOLDER));
        match (placeholders.next(), placeholders.next()) {
            (Some((sn_level, &level)), None) if level == SN_PLACEHOLDER => {
                Ok(Self { sn_level, text })
            }
            _ => Err(TemplateError::Placeholder(text)),
        }
    }
}

impl From<TopicTemplate> for String {
    fn from(t: TopicTemplate) -> String {
        t.text
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TopicTemplate {
    /// The topic of one device.
    pub fn for_device(&self, sn: &SerialNumber) -> String {
        self.text.replace(SN_PLACEHOLDER, sn.as_str())
    }

    fn levels(&self) -> impl Iterator<Item = &str> {
        self.text.split('/')
    }
}

/// The three per-device topics. Defaults have no leading slash: `vesper/{sn}/data` etc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Telemetry and heartbeats, published by the device.
    pub data: TopicTemplate,
    /// Online/offline and state changes, published by the device.
    pub status: TopicTemplate,
    /// Commands to the device, published by its owners.
    pub control: TopicTemplate,
}

impl Default for Topics {
    fn default() -> Self {
        let t = |s: &str| TopicTemplate::try_from(s.to_owned()).expect("default template");
        Self {
            data: t("vesper/{sn}/data"),
            status: t("vesper/{sn}/status"),
            control: t("vesper/{sn}/control"),
        }
    }
}

impl Topics {
    /// Rejects templates that name the same topic (the rules could not tell them apart).
    pub fn validate(&self) -> Result<(), TemplateError> {
        let all = [&self.data, &self.status, &self.control];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.text == b.text {
                    return Err(TemplateError::Duplicate(a.text.clone(), b.text.clone()));
                }
            }
        }
        Ok(())
    }

    fn template(&self, kind: TopicKind) -> &TopicTemplate {
        match kind {
            TopicKind::Data => &self.data,
            TopicKind::Status => &self.status,
            TopicKind::Control => &self.control,
        }
    }
}

/// The three kinds of per-device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Data,
    Status,
    Control,
}

impl TopicKind {
    pub const ALL: [TopicKind; 3] = [TopicKind::Data, TopicKind::Status, TopicKind::Control];
}

/// What a client asks to do, with mosquitto's `acc` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// acc 1: a message is about to be delivered to the client.
    Read = 1,
    /// acc 2: the client publishes.
    Write = 2,
    /// acc 4: the client subscribes (the raw filter, wildcards included).
    Subscribe = 4,
}

impl Access {
    /// Maps mosquitto's `acc` number; anything else (3, 8, ...) is not a question we answer.
    pub fn from_acc(acc: i64) -> Option<Self> {
        match acc {
            1 => Some(Self::Read),
            2 => Some(Self::Write),
            4 => Some(Self::Subscribe),
            _ => None,
        }
    }
}

/// Who is asking, as far as the rules care.
pub enum Subject<'a> {
    /// A device, logged in with its serial number as username.
    Device(&'a SerialNumber),
    /// A phone-app user; `may_use` says whether the device's `owner` or `users_list` holds them.
    User {
        may_use: &'a dyn Fn(&SerialNumber) -> bool,
    },
    /// The backend's service account.
    Service,
    /// Anyone else: denied everything.
    Unknown,
}

/// The answer to an ACL question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    fn from_bool(allowed: bool) -> Self {
        if allowed { Self::Allow } else { Self::Deny }
    }
}

/// A concrete grant: one kind of topic, for one device or (`None`) for any SN-level value.
struct Grant<'a> {
    kind: TopicKind,
    device: Option<&'a SerialNumber>,
}

/// Decides whether `subject` may perform `access` on `topic` (a filter when subscribing).
pub fn authorize(topics: &Topics, subject: &Subject, topic: &str, access: Access) -> Decision {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic.contains('\0') {
        return Decision::Deny;
    }
    if topic == CONTROL_TOPIC {
        return Decision::from_bool(matches!(subject, Subject::Service) && access == Access::Write);
    }
    let filter = match access {
        Access::Subscribe => strip_shared_prefix(topic),
        // Publishing and delivery name concrete topics: wildcards there are malformed.
        Access::Read | Access::Write if topic.contains(['+', '#']) => return Decision::Deny,
        Access::Read | Access::Write => Some(topic),
    };
    let Some(filter) = filter else {
        return Decision::Deny;
    };
    if filter.starts_with('$') || !is_valid_filter(filter) {
        return Decision::Deny;
    }
    let allowed = match subject {
        Subject::Device(sn) => grants_for(topics, filter, access, Role::Device, |candidate| {
            candidate == *sn
        }),
        Subject::User { may_use } => {
            grants_for(topics, filter, access, Role::Owner, |sn| may_use(sn))
        }
        Subject::Service => {
            access != Access::Write
                && [TopicKind::Data, TopicKind::Status]
                    .into_iter()
                    .any(|kind| covers(topics, &Grant { kind, device: None }, filter))
        }
        Subject::Unknown => false,
    };
    Decision::from_bool(allowed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Device,
    Owner,
}

/// The topic kinds a role may use with an access.
fn kinds(role: Role, access: Access) -> &'static [TopicKind] {
    match (role, access) {
        (Role::Device, Access::Write) | (Role::Owner, Access::Read | Access::Subscribe) => {
            &[TopicKind::Data, TopicKind::Status]
        }
        (Role::Device, Access::Read | Access::Subscribe) | (Role::Owner, Access::Write) => {
            &[TopicKind::Control]
        }
    }
}

/// Whether the filter names one device the predicate accepts, on a topic kind the role may use.
fn grants_for(
    topics: &Topics,
    filter: &str,
    access: Access,
    role: Role,
    related: impl Fn(&SerialNumber) -> bool,
) -> bool {
    kinds(role, access).iter().any(|&kind| {
        device_in(topics.template(kind), filter).is_some_and(|sn| {
            related(&sn)
                && covers(
                    topics,
                    &Grant {
                        kind,
                        device: Some(&sn),
                    },
                    filter,
                )
        })
    })
}

/// The serial number in the SN level of `filter`, if the filter has the template's shape there.
fn device_in(template: &TopicTemplate, filter: &str) -> Option<SerialNumber> {
    let level = filter.split('/').nth(template.sn_level)?;
    level.parse().ok()
}

/// Whether every topic that `filter` can match is inside the grant.
///
/// Grants are single topics or (`device: None`) topics with any one SN level, so a filter is
/// covered only if it has the same number of levels, no `#`, and wildcards only where the grant
/// accepts any value.
fn covers(topics: &Topics, grant: &Grant, filter: &str) -> bool {
    let template = topics.template(grant.kind);
    let filter_levels: Vec<&str> = filter.split('/').collect();
    let template_levels: Vec<&str> = template.levels().collect();
    if filter_levels.len() != template_levels.len() || filter_levels.contains(&"#") {
        return false;
    }
    filter_levels
        .iter()
        .zip(&template_levels)
        .enumerate()
        .all(|(i, (f, t))| {
            if i == template.sn_level {
                match grant.device {
                    Some(sn) => *f == sn.as_str(),
                    None => *f == "+" || f.parse::<SerialNumber>().is_ok(),
                }
            } else {
                f == t
            }
        })
}

/// `$share/group/filter` -> `filter`; other filters unchanged; a malformed share prefix -> None.
fn strip_shared_prefix(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            (!group.is_empty() && !group.contains(['+', '#']) && !inner.is_empty()).then_some(inner)
        }
    }
}

/// MQTT filter syntax: `+` and `#` occupy whole levels, and `#` only the last one.
fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        other => !other.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "PV-26A18-BC02R-X7KQA";

    fn sn(s: &str) -> SerialNumber {
        s.parse().unwrap()
    }

    #[test]
    fn templates_must_have_one_whole_sn_level() {
        for bad in [
            "vesper/data",
            "vesper/{sn}/{sn}",
            "vesper/x{sn}/data",
            "vesper/+/{sn}",
            "$SYS/{sn}",
            "a/#/{sn}",
        ] {
            assert!(TopicTemplate::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let slash = TopicTemplate::try_from("/vesper/{sn}/data".to_owned()).unwrap();
        assert_eq!(slash.for_device(&sn(A)), format!("/vesper/{A}/data"));
    }

    #[test]
    fn duplicate_templates_are_refused() {
        let mut topics = Topics::default();
        topics.status = topics.data.clone();
        assert!(topics.validate().is_err());
        assert!(Topics::default().validate().is_ok());
    }

    #[test]
    fn filter_syntax() {
        assert!(is_valid_filter("a/+/b"));
        assert!(is_valid_filter("a/#"));
        assert!(is_valid_filter("#"));
        assert!(!is_valid_filter("a/#/b"));
        assert!(!is_valid_filter("a/b+/c"));
        assert!(!is_valid_filter("a/b#"));
        assert_eq!(strip_shared_prefix("$share/g/vesper/x"), Some("vesper/x"));
        assert_eq!(strip_shared_prefix("$share//vesper/x"), None);
        assert_eq!(strip_shared_prefix("$share/g"), None);
        assert_eq!(strip_shared_prefix("$share/g/"), None);
    }
}
