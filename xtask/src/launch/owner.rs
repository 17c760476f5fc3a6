//! Who owns what torchenv creates on a shared engine, and the one check
//! that every command makes before it acts on a container, volume or
//! network.
//!
//! Everything torchenv creates for a user carries two labels: the user
//! name ([`LABEL_OWNER`], for people reading `docker ps`) and the host uid
//! ([`LABEL_OWNER_UID`], what ownership is decided on). An object is the
//! current user's ([`check`]) when its uid label is the user's uid. One
//! without a uid label was made by an older torchenv: it counts as the
//! user's only when its name label is the user's name *and* it has the name
//! torchenv gives that user's object of its environment
//! (`torchenv-<env>-<user>`); a volume never does (volume names carry the
//! uid since the uid label exists). Everything else is refused with
//! [`LaunchError::NotYours`], naming the owner's name and uid. Root is not
//! special: it owns what carries uid 0.
//!
//! The user name is the uid's passwd entry (`getent passwd`, so NSS/LDAP
//! users count), never `$USER` when the uid has an entry: nobody can make
//! their containers' names another user's by setting `$USER`. A uid without
//! an entry (a container's or `TORCHENV_UID`'s) uses `$USER` unless that is
//! some other uid's passwd name, else `uid<N>` ([`user_name`]).
//!
//! May use: `docker`, `launch`.

use std::collections::HashMap;

use super::{container_name, Identity, LaunchError, Result, LABEL_OWNER};
use crate::docker::run::LABEL_ONE_SHOT;
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};

/// Label: the host uid of the user torchenv created the object for.
pub const LABEL_OWNER_UID: &str = "dev.torchenv.owner-uid";

/// The owner labels of `who`'s objects: name and uid.
pub fn labels(who: &Identity) -> [(String, String); 2] {
    [
        (LABEL_OWNER.to_string(), who.user.clone()),
        (LABEL_OWNER_UID.to_string(), who.uid.to_string()),
    ]
}

/// The kinds of engine objects torchenv creates for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Volume,
    Network,
}

impl Kind {
    /// How an administrator removes one (`docker rm`, …).
    pub fn remove_command(self) -> &'static str {
        match self {
            Kind::Container => "docker rm -f",
            Kind::Volume => "docker volume rm",
            Kind::Network => "docker network rm",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Container => "container",
            Kind::Volume => "volume",
            Kind::Network => "network",
        })
    }
}

/// Whose an object is, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A uid label (and usually a name label).
    User { name: Option<String>, uid: String },
    /// torchenv's, without a uid label: made by an older torchenv.
    Legacy { name: Option<String> },
    /// Not made by torchenv at all (no managed-by label).
    NotTorchenv,
}

impl Owner {
    pub fn of(labels: &HashMap<String, String>) -> Owner {
        if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
            return Owner::NotTorchenv;
        }
        let name = labels.get(LABEL_OWNER).cloned();
        match labels.get(LABEL_OWNER_UID) {
            Some(uid) => Owner::User {
                name,
                uid: uid.clone(),
            },
            None => Owner::Legacy { name },
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::User { name: Some(n), uid } => write!(f, "{n} (uid {uid})"),
            Owner::User { name: None, uid } => write!(f, "uid {uid}"),
            Owner::Legacy { name: Some(n) } => write!(
                f,
                "{n} (uid unknown: made by an older torchenv, no {LABEL_OWNER_UID} label)"
            ),
            Owner::Legacy { name: None } => {
                write!(f, "an unknown user (made by torchenv without owner labels)")
            }
            Owner::NotTorchenv => write!(
                f,
                "someone outside torchenv (no {LABEL_MANAGED_BY}={MANAGED_BY} label)"
            ),
        }
    }
}

/// `name (uid N)` of the current user, for messages.
pub fn describe(who: &Identity) -> String {
    format!("{} (uid {})", who.user, who.uid)
}

/// Whether the object `name` of `kind` with `labels` is `who`'s (see the
/// module doc); [`LaunchError::NotYours`] naming its owner if not.
pub fn check(
    kind: Kind,
    name: &str,
    labels: &HashMap<String, String>,
    who: &Identity,
) -> Result<()> {
    let owner = Owner::of(labels);
    let mine = match &owner {
        Owner::User { uid, .. } => *uid == who.uid.to_string(),
        Owner::Legacy { name: Some(n) } => {
            kind != Kind::Volume
                && *n == who.user
                && labels
                    .get(LABEL_ENV)
                    .is_some_and(|env| container_name(env, who) == name)
        }
        Owner::Legacy { name: None } | Owner::NotTorchenv => false,
    };
    if mine {
        return Ok(());
    }
    Err(LaunchError::NotYours {
        kind,
        name: name.to_string(),
        owner: owner.to_string(),
        you: describe(who),
        remove: format!("{} {name}", kind.remove_command()),
    })
}

/// True for the labels of a one-shot run's container (the gate's, eval's).
pub fn is_one_shot(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(LABEL_ONE_SHOT)
}

/// One of the user's `up` containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnContainer {
    pub name: String,
    pub env: String,
}

/// Every `up` container of `who` (one-shot runs left out): those with
/// `who`'s uid label, and those an older torchenv made that [`check`]
/// counts as `who`'s. Sorted by environment.
pub async fn own_containers(docker: &Docker, who: &Identity) -> Result<Vec<OwnContainer>> {
    let uid = who.uid.to_string();
    let mut found = docker
        .list_managed_containers(&[(LABEL_OWNER_UID, &uid)])
        .await?;
    found.extend(
        docker
            .list_managed_containers(&[(LABEL_OWNER, &who.user)])
            .await?
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_some_and(|l| !l.contains_key(LABEL_OWNER_UID))
            }),
    );
    let mut out = Vec::new();
    for c in found {
        let labels = c.labels.unwrap_or_default();
        let name = c
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()));
        let (Some(name), Some(env)) = (name, labels.get(LABEL_ENV)) else {
            continue;
        };
        if is_one_shot(&labels) || check(Kind::Container, &name, &labels, who).is_err() {
            continue;
        }
        out.push(OwnContainer {
            name,
            env: env.clone(),
        });
    }
    out.sort_by(|a, b| (&a.env, &a.name).cmp(&(&b.env, &b.name)));
    out.dedup();
    Ok(out)
}

/// The name torchenv gives `uid`'s objects: the uid's passwd name; else
/// `env_user` (`$USER`) unless it is another uid's passwd name; else
/// `uid<N>`. `lookup` finds a passwd entry (name, uid) by name or uid.
pub fn user_name(
    uid: u32,
    env_user: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<(String, u32)>,
) -> String {
    if let Some((name, _)) = lookup(&uid.to_string()) {
        let name = super::sanitize(&name);
        if !name.is_empty() {
            return name;
        }
    }
    let env_user = env_user.map(super::sanitize).filter(|u| !u.is_empty());
    match env_user {
        Some(u) if lookup(&u).is_none_or(|(_, owner)| owner == uid) => u,
        _ => format!("uid{uid}"),
    }
}

/// The passwd entry (name, uid) whose name or uid is `key`: `getent passwd`
/// (every NSS source), or `/etc/passwd` where there is no `getent`.
pub fn passwd(key: &str) -> Option<(String, u32)> {
    match std::process::Command::new("getent")
        .args(["passwd", key])
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(out) => parse_passwd_line(String::from_utf8_lossy(&out.stdout).lines().next()?),
        Err(_) => std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .filter_map(parse_passwd_line)
            .find(|(name, uid)| name == key || uid.to_string() == key),
    }
}

/// `name:x:uid:gid:…` → (name, uid).
fn parse_passwd_line(line: &str) -> Option<(String, u32)> {
    let mut fields = line.split(':');
    let name = fields.next().filter(|n| !n.is_empty())?;
    let uid = fields.nth(1)?.parse().ok()?;
    Some((name.to_string(), uid))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn who(user: &str, uid: u32) -> Identity {
        Identity {
            user: user.into(),
            uid,
            gid: uid,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A passwd database of alice (1001) and bob (1002).
    fn db(key: &str) -> Option<(String, u32)> {
        [("alice", 1001), ("bob", 1002)]
            .into_iter()
            .find(|(n, u)| *n == key || u.to_string() == key)
            .map(|(n, u)| (n.to_string(), u))
    }

    #[test]
    fn the_name_comes_from_the_uids_passwd_entry_not_user() {
        assert_eq!(user_name(1001, Some("alice"), &db), "alice");
        // Setting $USER to another user's name changes nothing.
        assert_eq!(user_name(1002, Some("alice"), &db), "bob");
        assert_eq!(user_name(1002, None, &db), "bob");
        // A uid without an entry: $USER, unless it is someone else's name.
        assert_eq!(user_name(1234, Some("tlaunch"), &db), "tlaunch");
        assert_eq!(user_name(1234, Some("alice"), &db), "uid1234");
        assert_eq!(user_name(1234, None, &db), "uid1234");
        assert_eq!(user_name(1234, Some("a/b c"), &db), "abc");
        assert_eq!(user_name(1234, Some("//"), &db), "uid1234");
    }

    #[test]
    fn passwd_lines_parse() {
        assert_eq!(
            parse_passwd_line("alice:x:1001:1001:Alice,,,:/home/alice:/bin/bash"),
            Some(("alice".into(), 1001))
        );
        assert_eq!(
            parse_passwd_line("root:x:0:0:root:/root:/bin/bash"),
            Some(("root".into(), 0))
        );
        assert_eq!(parse_passwd_line(""), None);
        assert_eq!(parse_passwd_line("broken:x:notanumber:1"), None);
    }

    #[test]
    fn the_owner_labels_are_name_and_uid() {
        let l: HashMap<_, _> = super::labels(&who("alice", 1001)).into_iter().collect();
        assert_eq!(l[LABEL_OWNER], "alice");
        assert_eq!(l[LABEL_OWNER_UID], "1001");
    }

    #[test]
    fn only_objects_with_the_users_uid_are_theirs() {
        let alice = who("alice", 1001);
        let name = "torchenv-e-alice";
        let managed = (LABEL_MANAGED_BY, MANAGED_BY);
        let of = |pairs: &[(&str, &str)]| {
            let mut all = vec![managed, (LABEL_ENV, "e")];
            all.extend_from_slice(pairs);
            labels(&all)
        };
        let mine = of(&[(LABEL_OWNER, "alice"), (LABEL_OWNER_UID, "1001")]);
        assert!(check(Kind::Container, name, &mine, &alice).is_ok());
        // The uid decides, not the name label.
        let renamed = of(&[(LABEL_OWNER, "bob"), (LABEL_OWNER_UID, "1001")]);
        assert!(check(Kind::Container, name, &renamed, &alice).is_ok());
        let bobs = of(&[(LABEL_OWNER, "alice"), (LABEL_OWNER_UID, "1002")]);
        let e = check(Kind::Container, name, &bobs, &alice).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container torchenv-e-alice is not yours: it belongs to alice (uid 1002); you are alice (uid 1001)"
        );
        // Root is not special.
        let root = who("root", 0);
        assert!(check(Kind::Container, name, &mine, &root).is_err());
        // Not torchenv's at all.
        let e = check(Kind::Network, name, &labels(&[]), &alice).unwrap_err();
        assert!(e.to_string().contains("someone outside torchenv"), "{e}");
    }

    #[test]
    fn an_older_torchenvs_object_is_the_users_only_by_name_label_and_name() {
        let alice = who("alice", 1001);
        let legacy = labels(&[
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_ENV, "e"),
            (LABEL_OWNER, "alice"),
        ]);
        assert!(check(Kind::Container, "torchenv-e-alice", &legacy, &alice).is_ok());
        assert!(check(Kind::Network, "torchenv-e-alice", &legacy, &alice).is_ok());
        // Another name, or the name label of someone else: foreign.
        assert!(check(Kind::Container, "torchenv-f-alice", &legacy, &alice).is_err());
        let e = check(
            Kind::Container,
            "torchenv-e-alice",
            &legacy,
            &who("bob", 1002),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("alice (uid unknown: made by an older torchenv"),
            "{e}"
        );
        // Volumes have carried the uid since their names do.
        assert!(check(Kind::Volume, "torchenv-e-alice", &legacy, &alice).is_err());
    }

    #[test]
    fn not_yours_names_how_an_administrator_removes_it() {
        let e = check(
            Kind::Volume,
            "torchenv-1001-cache",
            &labels(&[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (LABEL_OWNER, "alice"),
                (LABEL_OWNER_UID, "1001"),
            ]),
            &who("bob", 1002),
        )
        .unwrap_err();
        let help = miette::Diagnostic::help(&e).unwrap().to_string();
        assert!(
            help.contains("docker volume rm torchenv-1001-cache"),
            "{help}"
        );
    }
}
