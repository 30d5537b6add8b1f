//! etcd's Auth service, and how a member learns who sent a request: a token
//! (simple or JWT) in the `token` metadata, or, with `--client-cert-auth`,
//! the common name of the verified client certificate when no token is sent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_proto::cairnpb::{auth_request, auth_response, write_request, AuthInfo, AuthRequest, Authenticate};
use cairn_proto::cairnpb::{write_response, AuthenticateResult, WriteRequest};
use cairn_proto::etcdserverpb::auth_server::Auth;
use cairn_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::node::Node;
use super::StartError;
use crate::auth::tokens::{simple_token_index, simple_token_prefix, Jwt};
use crate::auth::{password, Access};
use crate::config::{Config, TokenSpec};
use crate::error::EtcdError;

/// How often Authenticate tries again when the auth store changed between
/// the password check and the commit (etcd retries without a bound).
const AUTHENTICATE_ATTEMPTS: usize = 8;

/// The members' token provider, `--auth-token`.
#[derive(Debug)]
pub enum Tokens {
    Simple,
    Jwt(Jwt),
}

impl Tokens {
    /// Reads the JWT keys: a bad key fails the start, as in etcd.
    pub fn from_config(config: &Config) -> Result<Tokens, StartError> {
        match config.auth.token_spec()? {
            TokenSpec::Simple => Ok(Tokens::Simple),
            TokenSpec::Jwt { sign_method, public_key, private_key, ttl } => {
                let read = |path: Option<std::path::PathBuf>| {
                    path.map(|path| {
                        std::fs::read(&path).map_err(|err| StartError::Auth(format!("{}: {err}", path.display())))
                    })
                    .transpose()
                };
                let (public, private) = (read(public_key)?, read(private_key)?);
                let jwt =
                    Jwt::new(&sign_method, public.as_deref(), private.as_deref(), ttl).map_err(StartError::Auth)?;
                Ok(Tokens::Jwt(jwt))
            }
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// What a request says about who sent it, taken off the request so that a
/// stream can be judged again later: its token, else its certificate's name.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<Result<String, ()>>,
    /// The verified client certificates, read only while auth is on: most
    /// requests of an mTLS cluster without auth never parse one.
    certificates: Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
}

impl Node {
    pub fn credentials<T>(&self, request: &Request<T>) -> Credentials {
        let metadata = request.metadata();
        let token = metadata
            .get("token")
            .or_else(|| metadata.get("authorization"))
            .map(|token| token.to_str().map(str::to_string).map_err(|_| ()));
        // As etcd: the certificate names the user only with --client-cert-auth.
        let certificates =
            if token.is_none() && self.config.tls.client_cert_auth { request.peer_certs() } else { None };
        Credentials { token, certificates }
    }

    /// etcd's `AuthInfoFromCtx`: who sent a request, if anyone says. A token
    /// that is not valid is an error even while auth is off, as in etcd.
    pub async fn identify(&self, credentials: &Credentials) -> Result<Option<AuthInfo>, Status> {
        if let Some(token) = &credentials.token {
            let identity = match token {
                Ok(token) => self.token_identity(token).await,
                Err(()) => None,
            };
            return match identity {
                Some(who) => Ok(Some(who)),
                None => {
                    tracing::debug!("invalid auth token");
                    Err(EtcdError::InvalidAuthToken.into())
                }
            };
        }
        let Some(certificates) = credentials.certificates.as_ref().filter(|_| self.state.auth().is_enabled()) else {
            return Ok(None);
        };
        let common_name = certificates.first().and_then(|cert| crate::tls::common_name(cert));
        Ok(common_name.map(|username| AuthInfo { username, revision: self.state.auth().revision() }))
    }

    pub async fn who<T>(&self, request: &Request<T>) -> Result<Option<AuthInfo>, Status> {
        self.identify(&self.credentials(request)).await
    }

    /// The identity a client request carries into Raft: an empty one when
    /// the client sent none, so that apply can tell it from the members' own.
    pub async fn client_identity<T>(&self, request: &Request<T>) -> Result<AuthInfo, Status> {
        Ok(self.who(request).await?.unwrap_or_default())
    }

    async fn token_identity(&self, token: &str) -> Option<AuthInfo> {
        match &self.tokens {
            Tokens::Simple => {
                // As etcd: a token from an entry this member has not applied yet becomes valid once it has.
                let index = simple_token_index(token)?;
                self.wait_applied(index).await.ok()?;
                let username = self.state.simple_token_user(token)?;
                Some(AuthInfo { username, revision: self.state.auth().revision() })
            }
            Tokens::Jwt(jwt) => jwt.verify(token, unix_now()),
        }
    }

    /// etcd's `IsAdminPermitted` for the RPCs only root may call.
    pub async fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.check_admin_of(&self.credentials(request)).await
    }

    pub async fn check_admin_of(&self, credentials: &Credentials) -> Result<(), Status> {
        let who = self.identify(credentials).await?;
        Ok(self.state.auth().check_admin(who.as_ref())?)
    }

    /// etcd's `IsRangePermitted` on the member that serves a read.
    pub fn check_read(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.state.auth().check(Some(who), Access::Read, key, range_end)
    }

    /// After a read: a change to the auth store meanwhile voids it (etcd's `doSerialize`).
    pub fn check_still_current(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        let current = self.state.auth().revision();
        if who.revision != 0 && who.revision != current {
            return Err(EtcdError::AuthOldRevision);
        }
        Ok(())
    }
}

pub struct AuthService {
    pub node: Arc<Node>,
}

fn unexpected() -> Status {
    EtcdError::Internal("unexpected response type".into()).into()
}

impl AuthService {
    async fn propose(&self, who: AuthInfo, request: auth_request::Request) -> Result<auth_response::Response, Status> {
        let write = WriteRequest {
            request: Some(write_request::Request::Auth(AuthRequest { request: Some(request) })),
            auth_info: Some(who),
        };
        match self.node.write(write).await? {
            write_response::Response::Auth(auth) => auth.response.ok_or_else(unexpected),
            _ => Err(unexpected()),
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        self.node.header(self.node.state.current_revision())
    }

    /// Hashing costs milliseconds by design: off the async workers.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.node.config.auth.bcrypt_cost();
        let hashed = tokio::task::spawn_blocking(move || password::hash(&password, cost)).await;
        Ok(hashed.map_err(|err| EtcdError::Internal(err.to_string()))??)
    }
}

/// The Auth RPCs that are one Raft round trip: propose, then answer with the
/// member's header.
macro_rules! through_raft {
    ($self:ident, $request:ident, $variant:ident) => {{
        let who = $self.node.client_identity(&$request).await?;
        match $self.propose(who, auth_request::Request::$variant($request.into_inner())).await? {
            auth_response::Response::$variant(mut response) => {
                response.header = $self.header();
                Ok(Response::new(response))
            }
            _ => Err(unexpected()),
        }
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        through_raft!(self, request, Enable)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        through_raft!(self, request, Disable)
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        through_raft!(self, request, Status)
    }

    /// etcd's Authenticate: the password is checked here, off the async
    /// workers; the log only records who logged in. A change to the auth
    /// store between the check and the commit means checking again.
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = request.into_inner();
        self.node.linearizable_barrier().await?;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let (stored, checked_at) = self.node.state.auth().password_hash(&name)?;
            let password = password.clone();
            let matches = tokio::task::spawn_blocking(move || password::matches(&password, &stored)).await;
            if !matches.map_err(|err| EtcdError::Internal(err.to_string()))? {
                tracing::info!(user = %name, "invalid password");
                return Err(EtcdError::AuthFailed.into());
            }
            let simple_token_prefix = match &self.node.tokens {
                Tokens::Simple => simple_token_prefix()?,
                Tokens::Jwt(_) => String::new(),
            };
            let login = auth_request::Request::Authenticate(Authenticate { name: name.clone(), simple_token_prefix });
            let auth_response::Response::Authenticate(AuthenticateResult { token, revision }) =
                self.propose(AuthInfo::default(), login).await?
            else {
                return Err(unexpected());
            };
            // The revision the entry was applied at, not this member's: it may not have applied it yet.
            if checked_at != revision {
                tracing::info!("revision when password checked became stale; retrying");
                continue;
            }
            let token = match &self.node.tokens {
                Tokens::Simple => token,
                Tokens::Jwt(jwt) => jwt.sign(&name, revision, unix_now())?,
            };
            return Ok(Response::new(AuthenticateResponse { header: self.header(), token }));
        }
        Err(EtcdError::Timeout.into())
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let mut add = request.into_inner();
        if !add.options.as_ref().is_some_and(|options| options.no_password) {
            add.hashed_password = self.hash(std::mem::take(&mut add.password)).await?;
        }
        match self.propose(who, auth_request::Request::UserAdd(add)).await? {
            auth_response::Response::UserAdd(_) => Ok(Response::new(AuthUserAddResponse { header: self.header() })),
            _ => Err(unexpected()),
        }
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        through_raft!(self, request, UserGet)
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        through_raft!(self, request, UserList)
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        through_raft!(self, request, UserDelete)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let mut change = request.into_inner();
        if !change.password.is_empty() {
            change.hashed_password = self.hash(std::mem::take(&mut change.password)).await?;
        }
        match self.propose(who, auth_request::Request::UserChangePassword(change)).await? {
            auth_response::Response::UserChangePassword(_) => {
                Ok(Response::new(AuthUserChangePasswordResponse { header: self.header() }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        through_raft!(self, request, UserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        through_raft!(self, request, UserRevokeRole)
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        through_raft!(self, request, RoleAdd)
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        through_raft!(self, request, RoleGet)
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        through_raft!(self, request, RoleList)
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        through_raft!(self, request, RoleDelete)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        through_raft!(self, request, RoleGrantPermission)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        through_raft!(self, request, RoleRevokePermission)
    }
}
