//! Errors. [`EtcdError`] is every error a client can see, and the one place
//! where etcd's gRPC codes and messages are produced.

use cairn_proto::cairnpb::{WriteError, WriteErrorReason};
use tonic::{Code, Status};

use crate::engine::EngineError;

/// Errors with etcd's exact wording (etcd's `api/v3rpc/rpctypes/error.go`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// etcd 3.5 maps this one to no gRPC error: clients see the auth package's text, code Unknown.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// As [`EtcdError::NoPasswordUser`]: a member whose JWT key can only verify.
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    #[error("etcdserver: {0}")]
    Internal(String),
    /// The Lock and Election services' errors, as etcd's concurrency package
    /// words them; etcd returns them as they are, so clients see code Unknown.
    #[error("session expired")]
    SessionExpired,
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// etcd's `mvcc.ErrWatcherDuplicateID`, sent as a cancel reason.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateWatchId,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    /// etcd maps this one to no gRPC error: code Unknown.
    #[error("etcdserver: unknown method")]
    UnknownMethod,
    #[error("etcdserver: snapshot: {0}")]
    Snapshot(String),
    /// A peer of another cluster (rafthttp's check of `X-Etcd-Cluster-ID`).
    #[error("cluster ID mismatch: ours {ours:x}, the peer's {theirs:x}")]
    ClusterIdMismatch { ours: u64, theirs: u64 },
    #[error("bad raft message: {0}")]
    BadPeerMessage(String),
    #[error("peer unavailable: {0}")]
    PeerUnavailable(String),
    /// An error another member produced, relayed as it was.
    #[error("{message}")]
    Relayed { code: i32, message: String },
}

impl EtcdError {
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | InvalidSortOption
            | RequestTooLarge | MemberBadUrls | UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven
            | InvalidAuthMgmt | AuthOldRevision => Code::InvalidArgument,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
            | RoleNotGranted | PermissionNotGranted | AuthNotEnabled => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoPasswordUser | VerifyOnly | UnknownMethod => Code::Unknown,
            WrongDowngradeVersionFormat | InvalidDowngradeTargetVersion => Code::InvalidArgument,
            NoInflightDowngrade => Code::FailedPrecondition,
            SessionExpired | ElectionNotLeader | ElectionNoLeader | MissingLeaderKey => Code::Unknown,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            Corrupt => Code::DataLoss,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            NotCapable | NotLeader | LeaseExist | BadLeaderTransferee | MemberExist | PeerUrlExist
            | MemberNotLearner | LearnerNotReady | TooManyLearners => Code::FailedPrecondition,
            NoLeader
            | Timeout
            | TimeoutDueToLeaderFail
            | LeaderChanged
            | Stopped
            | LeaderTransferTimeout
            | NotSupportedForLearner => Code::Unavailable,
            Internal(_) | Snapshot(_) => Code::Internal,
            DuplicateWatchId | ClusterIdMismatch { .. } => Code::FailedPrecondition,
            BadPeerMessage(_) => Code::InvalidArgument,
            PeerUnavailable(_) => Code::Unavailable,
            Relayed { code, .. } => Code::from_i32(*code),
        }
    }

    /// An error as another member sent it.
    pub fn relayed(error: WriteError) -> Self {
        EtcdError::Relayed { code: error.code, message: error.message }
    }

    /// The error as a write response carries it between members.
    pub fn to_write_error(&self) -> WriteError {
        let reason = match self {
            EtcdError::NotLeader => WriteErrorReason::NotLeader,
            _ => WriteErrorReason::Unspecified,
        };
        WriteError { code: self.code() as i32, message: self.to_string(), reason: reason as i32 }
    }

    /// Whether a member answered that it is not the leader (nothing was done).
    pub fn is_not_leader(error: &WriteError) -> bool {
        error.reason == WriteErrorReason::NotLeader as i32
    }

    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

impl From<EtcdError> for Status {
    fn from(err: EtcdError) -> Self {
        err.to_status()
    }
}

/// Errors inside the store: a client-visible outcome, or a fault underneath.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Etcd(etcd) => etcd.to_status(),
            StoreError::Engine(engine) => {
                tracing::error!(error = %engine, "storage failure");
                Status::internal(format!("etcdserver: {engine}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_etcd() {
        let status = EtcdError::Compacted.to_status();
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(EtcdError::EmptyKey.to_status().code(), Code::InvalidArgument);
        assert_eq!(EtcdError::LeaseNotFound.to_status().code(), Code::NotFound);
    }

    #[test]
    fn not_leader_is_recognised_by_its_reason_not_its_message() {
        assert!(EtcdError::is_not_leader(&EtcdError::NotLeader.to_write_error()));
        let same_words =
            WriteError { message: EtcdError::NotLeader.to_string(), ..EtcdError::Stopped.to_write_error() };
        assert!(!EtcdError::is_not_leader(&same_words));
        assert!(!EtcdError::is_not_leader(&EtcdError::LeaderChanged.to_write_error()));
    }
}
