//! `cargo xtask status [--json]`: this user's torchenv containers: env,
//! state, image, ports, GPUs, uptime.
//!
//! May use: `docker`, `launch`, `launch::up`.

use serde::Serialize;

use super::Result;
use super::{Identity, LABEL_OWNER};
use crate::docker::{Docker, LABEL_ENV};

#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    pub env: String,
    pub container: String,
    pub state: String,
    pub image: String,
    /// `127.0.0.1:8888->8888/tcp`.
    pub ports: Vec<String>,
    /// `all`, a count, device ids, or `none`.
    pub gpus: String,
    /// Seconds since start, when running.
    pub uptime_s: Option<u64>,
}

/// The status of every torchenv container of the current user.
pub async fn collect(docker: &Docker) -> Result<Vec<EnvStatus>> {
    let who = Identity::current();
    let mut out = Vec::new();
    for summary in docker
        .list_managed_containers(&[(LABEL_OWNER, &who.user)])
        .await?
    {
        let Some(name) = summary
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
        else {
            continue;
        };
        let Some(c) = docker.inspect_container(&name).await? else {
            continue;
        };
        let state = c.state.clone().unwrap_or_default();
        let ports = super::up::published_of(&c)
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container.key()))
            .collect();
        let gpus = match c
            .host_config
            .as_ref()
            .and_then(|h| h.device_requests.clone())
        {
            None => "none".to_string(),
            Some(reqs) if reqs.is_empty() => "none".to_string(),
            Some(reqs) => reqs
                .iter()
                .map(|r| match (&r.device_ids, r.count) {
                    (Some(ids), _) => ids.join(","),
                    (None, Some(-1)) => "all".into(),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let running = state.running.unwrap_or(false);
        let uptime_s = running
            .then(|| state.started_at.as_deref().and_then(parse_rfc3339))
            .flatten()
            .map(|start| now_s().saturating_sub(start));
        out.push(EnvStatus {
            env: super::up::label(&c, LABEL_ENV).unwrap_or("?").to_string(),
            container: name,
            state: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            image: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            ports,
            gpus,
            uptime_s,
        });
    }
    out.sort_by(|a, b| a.env.cmp(&b.env));
    Ok(out)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the epoch of `2024-05-01T12:34:56.789Z` (UTC only, as the
/// engine writes it).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['.', '+']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

pub fn human(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::parse_rfc3339("2024-05-01T12:34:56.789123456Z"),
            Some(1_714_566_896)
        );
    }
}
