//! The names of the databases pgfresh creates, derived from a template's hash.
//!
//! A name only narrows the search: the marker (see [`crate::marker`]) is what proves a database
//! is pgfresh's. Every name fits PostgreSQL's 63-byte limit and uses only lowercase hex digits,
//! letters and underscores, so it can be quoted into SQL as is.

/// Every database pgfresh creates starts with this; the marker comment (see
/// [`crate::marker`]) is what proves it is ours, the prefix only narrows the search.
pub(crate) const PREFIX: &str = "pgfresh_";

/// `pgfresh_t_<hash>`: the template of one migration set (16 hex digits: 26 bytes).
pub(crate) fn template_name(hash: &str) -> String {
    format!("{PREFIX}t_{hash}")
}

/// `pgfresh_<hash8>_<owner>_<random6>`: one test's database, owned by the process holding the
/// owner lock `owner` (32 bytes, well within the 63-byte limit).
pub(crate) fn test_db_name(hash: &str, owner: i32) -> String {
    format!("{PREFIX}{}_{owner:08x}_{}", &hash[..8], random(6))
}

/// `pgfresh_r_<hash>_`: the prefix of the ready clones of a template.
pub(crate) fn ready_prefix(hash: &str) -> String {
    format!("{PREFIX}r_{hash}_")
}

/// `pgfresh_r_<hash>_<owner>_<random4>`: a ready clone being made by `owner` (40 bytes).
pub(crate) fn ready_db_name(hash: &str, owner: i32) -> String {
    format!("{}{owner:08x}_{}", ready_prefix(hash), random(4))
}

/// The owner a test database's or ready clone's name carries (templates carry none). Names
/// carry their owner so that a database caught between two statements, before its marker says
/// who owns it, can still be told apart from one a live process is using.
pub(crate) fn owner_in_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix("r_").unwrap_or(rest);
    let mut parts = rest.split('_');
    let (_hash, owner, _random) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || owner.len() != 8 {
        return None;
    }
    u32::from_str_radix(owner, 16)
        .ok()
        .and_then(|o| i32::try_from(o).ok())
}

fn random(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_postgres_limit() {
        let hash = "0123456789abcdef";
        let t = template_name(hash);
        let d = test_db_name(hash, 42);
        let r = ready_db_name(hash, i32::MAX);
        assert!(
            t.len() <= 63 && d.len() <= 63 && r.len() <= 63,
            "{t} {d} {r}"
        );
        assert!(r.starts_with(&ready_prefix(hash)));
        assert_eq!(owner_in_name(&d), Some(42));
        assert_eq!(owner_in_name(&r), Some(i32::MAX));
        assert_eq!(owner_in_name(&t), None);
        assert_eq!(owner_in_name("pgfresh_zz_notanowner_x"), None);
        assert!(d.starts_with(PREFIX) && t.starts_with(PREFIX));
        assert_ne!(test_db_name(hash, 42), d);
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }
}
