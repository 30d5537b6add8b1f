//! etcd's auth store: users, roles and their key-range permissions, the
//! checks a request passes while auth is enabled, and the changes the Auth
//! RPCs make through Raft.
//!
//! Pure: no I/O and no clock. The replicated state lives in [`AuthStore`];
//! passwords are hashed and checked by the member that takes the request
//! ([`password`]), never in apply; tokens are the members' own ([`tokens`]).

pub mod password;
pub mod ranges;
pub mod tokens;

use std::collections::{BTreeMap, HashMap};

use cairn_proto::authpb::{permission, Permission, Role, User, UserAddOptions};
use cairn_proto::cairnpb::{auth_request, auth_response, AuthInfo, AuthRequest, AuthState, AuthenticateResult};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::*;

use crate::error::EtcdError;
use ranges::{interval, Ranges};

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// What a user may do, merged over their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Merged {
    root: bool,
    read: Ranges,
    write: Ranges,
}

/// The replicated auth store, etcd's `authStore`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    /// Bumped by every change to users, roles or permissions, and by disabling.
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Derived from users and roles after every change: checks only look up.
    merged: HashMap<String, Merged>,
}

impl Default for AuthStore {
    /// etcd starts a new store at revision 1.
    fn default() -> Self {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            merged: HashMap::new(),
        }
    }
}

/// The access a request needs on a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// What an applied auth change means for the tokens members hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEffect {
    /// A user authenticated: members register its simple token.
    Issued { name: String, simple_token_prefix: String },
    /// A user was deleted or its password changed.
    RevokeUser(String),
    /// Auth was disabled.
    RevokeAll,
}

fn name_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl AuthStore {
    pub fn from_state(state: AuthState) -> Self {
        let mut store = AuthStore {
            enabled: state.enabled,
            revision: state.revision.max(1),
            users: state.users.into_iter().map(|user| (name_of(&user.name), user)).collect(),
            roles: state.roles.into_iter().map(|role| (name_of(&role.name), role)).collect(),
            merged: HashMap::new(),
        };
        store.remerge();
        store
    }

    pub fn to_state(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|user| user.roles.iter().any(|granted| granted == role))
    }

    /// The bcrypt hash to check a password against, and the revision it was
    /// read at (etcd's `CheckPassword`, before the hash comparison).
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if no_password(user) {
            return Err(EtcdError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    /// etcd's `IsAdminPermitted`: the root role, checked whatever the revision.
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let name = who.map(|who| who.username.as_str()).filter(|name| !name.is_empty()).ok_or(EtcdError::UserEmpty)?;
        match self.merged.get(name) {
            None => Err(EtcdError::UserNotFound),
            Some(merged) if merged.root => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// etcd's `isOpPermitted`: an identity from an older auth revision is refused.
    pub fn check(&self, who: Option<&AuthInfo>, access: Access, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let who = who.filter(|who| who.revision != 0).ok_or(EtcdError::UserEmpty)?;
        if who.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let merged = self.merged.get(&who.username).ok_or(EtcdError::PermissionDenied)?;
        let ranges = match access {
            Access::Read => &merged.read,
            Access::Write => &merged.write,
        };
        if merged.root || ranges.covers(key, range_end) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// A Txn needs read access to every compare and the access of every
    /// operation in both branches, nested transactions included.
    pub fn check_txn(&self, who: Option<&AuthInfo>, txn: &TxnRequest) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        for compare in &txn.compare {
            self.check(who, Access::Read, &compare.key, &compare.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(Request::RequestRange(range)) => self.check(who, Access::Read, &range.key, &range.range_end)?,
                Some(Request::RequestPut(put)) => self.check(who, Access::Write, &put.key, &[])?,
                Some(Request::RequestDeleteRange(delete)) => {
                    if delete.prev_kv {
                        self.check(who, Access::Read, &delete.key, &delete.range_end)?;
                    }
                    self.check(who, Access::Write, &delete.key, &delete.range_end)?;
                }
                Some(Request::RequestTxn(nested)) => self.check_txn(who, nested)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Applies one Auth request: etcd's admin check, then the change. `who`
    /// is the client's identity (an empty one when it sent none).
    pub fn apply(
        &mut self,
        request: AuthRequest,
        who: Option<&AuthInfo>,
    ) -> Result<(auth_response::Response, Option<TokenEffect>), EtcdError> {
        use auth_request::Request as Req;
        use auth_response::Response as Resp;
        let Some(request) = request.request else {
            return Err(EtcdError::Internal("empty auth request".into()));
        };
        // No identity: the request comes from the members themselves.
        if let Some(who) = who {
            match &request {
                Req::Authenticate(_) => {}
                // A user may read itself, and the roles it has.
                Req::UserGet(get) if get.name == who.username => {}
                Req::RoleGet(get) if self.has_role(&who.username, &get.role) => {}
                _ => self.check_admin(Some(who))?,
            }
        }
        let changed_before = self.revision;
        let mut effect = None;
        let response = match request {
            Req::Enable(_) => {
                self.enable()?;
                Resp::Enable(Default::default())
            }
            Req::Disable(_) => {
                if self.enabled {
                    self.enabled = false;
                    self.revision += 1;
                    effect = Some(TokenEffect::RevokeAll);
                }
                Resp::Disable(Default::default())
            }
            Req::Status(_) => {
                Resp::Status(AuthStatusResponse { header: None, enabled: self.enabled, auth_revision: self.revision })
            }
            Req::Authenticate(auth) => {
                if !self.enabled {
                    return Err(EtcdError::AuthNotEnabled);
                }
                let user = self.users.get(&auth.name).ok_or(EtcdError::AuthFailed)?;
                if no_password(user) {
                    return Err(EtcdError::AuthFailed);
                }
                effect = Some(TokenEffect::Issued { name: auth.name, simple_token_prefix: auth.simple_token_prefix });
                Resp::Authenticate(AuthenticateResult { token: String::new(), revision: self.revision })
            }
            Req::UserAdd(add) => {
                self.user_add(add)?;
                Resp::UserAdd(Default::default())
            }
            Req::UserDelete(delete) => {
                if self.enabled && delete.name == ROOT_USER {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                self.users.remove(&delete.name).ok_or(EtcdError::UserNotFound)?;
                self.revision += 1;
                effect = Some(TokenEffect::RevokeUser(delete.name));
                Resp::UserDelete(Default::default())
            }
            Req::UserChangePassword(change) => {
                let user = self.users.get_mut(&change.name).ok_or(EtcdError::UserNotFound)?;
                if !no_password(user) {
                    user.password = password::decode_hash(&change.hashed_password)?;
                }
                self.revision += 1;
                effect = Some(TokenEffect::RevokeUser(change.name));
                Resp::UserChangePassword(Default::default())
            }
            Req::UserGrantRole(grant) => {
                if !self.users.contains_key(&grant.user) {
                    return Err(EtcdError::UserNotFound);
                }
                if grant.role != ROOT_ROLE && !self.roles.contains_key(&grant.role) {
                    return Err(EtcdError::RoleNotFound);
                }
                let user = self.users.get_mut(&grant.user).ok_or(EtcdError::UserNotFound)?;
                if let Err(at) = user.roles.binary_search(&grant.role) {
                    user.roles.insert(at, grant.role);
                    self.revision += 1;
                }
                Resp::UserGrantRole(Default::default())
            }
            Req::UserGet(get) => {
                let user = self.users.get(&get.name).ok_or(EtcdError::UserNotFound)?;
                Resp::UserGet(AuthUserGetResponse { header: None, roles: user.roles.clone() })
            }
            Req::UserList(_) => {
                Resp::UserList(AuthUserListResponse { header: None, users: self.users.keys().cloned().collect() })
            }
            Req::UserRevokeRole(revoke) => {
                if self.enabled && revoke.name == ROOT_USER && revoke.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(&revoke.name).ok_or(EtcdError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|role| *role != revoke.role);
                if user.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                self.revision += 1;
                Resp::UserRevokeRole(Default::default())
            }
            Req::RoleAdd(add) => {
                if add.name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if self.roles.contains_key(&add.name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                let role = Role { name: add.name.clone().into_bytes(), key_permission: Vec::new() };
                self.roles.insert(add.name, role);
                self.revision += 1;
                Resp::RoleAdd(Default::default())
            }
            Req::RoleGrantPermission(grant) => {
                let perm = grant.perm.ok_or(EtcdError::PermissionNotGiven)?;
                if !ranges::is_valid(&perm.key, &perm.range_end) {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let role = self.roles.get_mut(&grant.name).ok_or(EtcdError::RoleNotFound)?;
                grant_permission(role, perm);
                self.revision += 1;
                Resp::RoleGrantPermission(Default::default())
            }
            Req::RoleGet(get) => {
                let role = self.roles.get(&get.role).ok_or(EtcdError::RoleNotFound)?;
                Resp::RoleGet(AuthRoleGetResponse { header: None, perm: role.key_permission.clone() })
            }
            Req::RoleList(_) => {
                Resp::RoleList(AuthRoleListResponse { header: None, roles: self.roles.keys().cloned().collect() })
            }
            Req::RoleRevokePermission(revoke) => {
                let role = self.roles.get_mut(&revoke.role).ok_or(EtcdError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission.retain(|perm| perm.key != revoke.key || perm.range_end != revoke.range_end);
                if role.key_permission.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                self.revision += 1;
                Resp::RoleRevokePermission(Default::default())
            }
            Req::RoleDelete(delete) => {
                if self.enabled && delete.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                self.roles.remove(&delete.role).ok_or(EtcdError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|role| *role != delete.role);
                }
                self.revision += 1;
                Resp::RoleDelete(Default::default())
            }
        };
        if self.revision != changed_before {
            self.remerge();
        }
        Ok((response, effect))
    }

    fn enable(&mut self) -> Result<(), EtcdError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
        if !root.roles.iter().any(|role| role == ROOT_ROLE) {
            return Err(EtcdError::RootRoleNotExist);
        }
        // As etcd 3.5: enabling does not move the revision.
        self.enabled = true;
        Ok(())
    }

    fn user_add(&mut self, add: AuthUserAddRequest) -> Result<(), EtcdError> {
        if add.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.users.contains_key(&add.name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let options = add.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password { Vec::new() } else { password::decode_hash(&add.hashed_password)? };
        let user = User { name: add.name.clone().into_bytes(), password, roles: Vec::new(), options: Some(options) };
        self.users.insert(add.name, user);
        self.revision += 1;
        Ok(())
    }

    /// Recomputes every user's merged permissions; changes are rare, checks are not.
    fn remerge(&mut self) {
        let merged = self
            .users
            .iter()
            .map(|(name, user)| {
                let (mut read, mut write) = (Vec::new(), Vec::new());
                let granted = user.roles.iter().filter_map(|role| self.roles.get(role));
                for perm in granted.flat_map(|role| &role.key_permission) {
                    let range = interval(&perm.key, &perm.range_end);
                    match permission::Type::try_from(perm.perm_type) {
                        Ok(permission::Type::Read) => read.push(range),
                        Ok(permission::Type::Write) => write.push(range),
                        Ok(permission::Type::Readwrite) => {
                            read.push(range.clone());
                            write.push(range);
                        }
                        Err(_) => {}
                    }
                }
                let root = user.roles.iter().any(|role| role == ROOT_ROLE);
                (name.clone(), Merged { root, read: Ranges::merge(read), write: Ranges::merge(write) })
            })
            .collect();
        self.merged = merged;
    }
}

fn no_password(user: &User) -> bool {
    user.options.as_ref().is_some_and(|options| options.no_password)
}

/// etcd keeps a role's permissions sorted by key; granting the same range
/// again only changes its type.
fn grant_permission(role: &mut Role, perm: Permission) {
    let at = role.key_permission.partition_point(|existing| existing.key < perm.key);
    let same = role.key_permission[at..]
        .iter()
        .take_while(|existing| existing.key == perm.key)
        .position(|existing| existing.range_end == perm.range_end);
    match same {
        Some(offset) => role.key_permission[at + offset].perm_type = perm.perm_type,
        None => {
            role.key_permission.push(perm);
            role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
}

#[cfg(test)]
mod tests;
