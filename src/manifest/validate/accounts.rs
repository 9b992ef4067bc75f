//! `[[group]]` and `[[user]]`: valid, unique names (never `root`, `nogroup` or
//! `nobody`, which the passwd generator always writes), users' homes as image paths, and
//! `[image] user`, which must name a `[[user]]`, `root` or a numeric `uid[:gid]`.
//! Nothing here touches the file system.

use std::collections::BTreeSet;

use serde_spanned::Spanned;

use super::Cx;
use crate::manifest::schema::{RawGroup, RawUser};
use crate::manifest::{Group, ManifestError, User};

impl Cx {
    /// The groups, then the users, then the image's user against them.
    pub(super) fn accounts(
        &self,
        raw_groups: &[Spanned<RawGroup>],
        raw_users: &[Spanned<RawUser>],
        image_user: Option<&Spanned<String>>,
        merged_usr: bool,
    ) -> Result<(Vec<Group>, Vec<User>), ManifestError> {
        let mut groups = Vec::new();
        let mut group_names = BTreeSet::new();
        for g in raw_groups {
            let gr = g.get_ref();
            self.account_name(&gr.name, &mut group_names, "group", "nogroup")?;
            groups.push(Group {
                name: gr.name.get_ref().clone(),
                gid: gr.gid,
                members: gr.members.clone(),
            });
        }
        let mut users = Vec::new();
        let mut user_names = BTreeSet::new();
        for u in raw_users {
            let ur = u.get_ref();
            self.account_name(&ur.name, &mut user_names, "user", "nobody")?;
            let home = match &ur.home {
                Some(h) => Some(self.image_path(h, merged_usr, "home")?),
                None => None,
            };
            users.push(User {
                name: ur.name.get_ref().clone(),
                uid: ur.uid,
                gid: ur.gid,
                home,
                shell: ur.shell.clone(),
                gecos: ur.gecos.clone(),
            });
        }
        if let Some(user) = image_user {
            self.image_user(user, &user_names)?;
        }
        Ok((groups, users))
    }

    /// `[image] user`: a `[[user]]`, `root`, `uid` or `uid:gid`.
    fn image_user(
        &self,
        user: &Spanned<String>,
        user_names: &BTreeSet<String>,
    ) -> Result<(), ManifestError> {
        let u = user.get_ref();
        let numeric = u
            .split_once(':')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
            || u.parse::<u32>().is_ok();
        if !numeric && !user_names.contains(u) && u != "root" {
            return Err(self.error(
                user.span(),
                format!("user `{u}` is neither a [[user]] of the manifest nor `uid:gid`"),
                "add a [[user]] with that name, or write the numeric form, e.g. \"1002:1001\"",
            ));
        }
        Ok(())
    }

    /// A [[user]] or [[group]] name: valid, unique, and not `root` or `builtin` (the
    /// generator always writes those).
    fn account_name(
        &self,
        name: &Spanned<String>,
        seen: &mut BTreeSet<String>,
        kind: &str,
        builtin: &str,
    ) -> Result<(), ManifestError> {
        let n = name.get_ref();
        let valid = !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !n.starts_with('-');
        if !valid {
            return Err(self.error(
                name.span(),
                format!("`{n}` is not a valid {kind} name"),
                "use letters, digits, `_`, `-` and `.` (at most 32)",
            ));
        }
        if !seen.insert(n.clone()) || n == "root" || n == builtin {
            return Err(self.error(
                name.span(),
                format!("{kind} `{n}` is defined twice (root and {builtin} are always there)"),
                format!("give each [[{kind}]] a unique name"),
            ));
        }
        Ok(())
    }
}
