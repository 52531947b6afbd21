using System.Net;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Gateway.Diagnostics;

/// <summary>The gateway's log messages, with fixed event ids. Nothing per byte is logged above Trace.</summary>
internal static partial class GatewayLog
{
    /// <summary>
    /// Whether the <paramref name="count"/>th occurrence of a limit hit or a rejection is logged at its level: the first
    /// and every 1,000th, so an attack cannot flood the log (the others go to Debug and the metrics).
    /// </summary>
    public static bool IsSampled(long count) => OrleansProtocol.Diagnostics.LogSampling.IsSampled(count);

    [LoggerMessage(1, LogLevel.Information, "Listener {Listener} serving {GrainType} on {EndPoint}", EventName = "ListenerStarted")]
    public static partial void ListenerStarted(ILogger logger, string listener, string grainType, EndPoint endPoint);

    [LoggerMessage(2, LogLevel.Information, "Listener {Listener} stopped accepting on {EndPoint}", EventName = "ListenerStopped")]
    public static partial void ListenerStopped(ILogger logger, string listener, EndPoint? endPoint);

    [LoggerMessage(3, LogLevel.Warning, "Listener {Listener}: accept failed; retrying", EventName = "AcceptFailed")]
    public static partial void AcceptFailed(ILogger logger, string listener, Exception exception);

    [LoggerMessage(4, LogLevel.Warning, "Listener {Listener}: {Count} connection(s) did not close within the drain timeout of {DrainTimeout} and were aborted", EventName = "DrainIncomplete")]
    public static partial void DrainIncomplete(ILogger logger, string listener, int count, TimeSpan drainTimeout);

    [LoggerMessage(5, LogLevel.Warning, "Listener {Listener}: {Count} connection(s) were still finishing after abort when the gateway stopped", EventName = "StopIncomplete")]
    public static partial void StopIncomplete(ILogger logger, string listener, int count);

    [LoggerMessage(10, LogLevel.Debug, "Connection {ConnectionId} accepted from {RemoteEndPoint} on listener {Listener}", EventName = "ConnectionAccepted")]
    public static partial void ConnectionAccepted(ILogger logger, string connectionId, EndPoint? remoteEndPoint, string listener);

    [LoggerMessage(11, LogLevel.Debug, "Connection {ConnectionId} closed: {Reason} {Detail} after {Duration}; {BytesReceived} bytes received, {BytesSent} bytes sent", EventName = "ConnectionClosed")]
    public static partial void ConnectionClosed(ILogger logger, string connectionId, ConnectionCloseReason reason, string? detail, TimeSpan duration, long bytesReceived, long bytesSent);

    [LoggerMessage(12, LogLevel.Warning, "Connection {ConnectionId}: the grain could not be reached; aborting the connection", EventName = "GrainUnavailable")]
    public static partial void GrainUnavailable(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(13, LogLevel.Warning, "Connection {ConnectionId}: the grain has no record of this connection (its activation was lost); aborting the connection", EventName = "GrainLostConnection")]
    public static partial void GrainLostConnection(ILogger logger, string connectionId);

    [LoggerMessage(14, LogLevel.Warning, "Connection {ConnectionId}: could not deliver ConnectionLost to the grain", EventName = "ConnectionLostFailed")]
    public static partial void ConnectionLostFailed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(15, LogLevel.Debug, "Connection {ConnectionId}: write buffer {BufferedBytes} bytes; writing {State}", EventName = "WriteFlowChanged")]
    public static partial void WriteFlowChanged(ILogger logger, string connectionId, long bufferedBytes, string state);

    [LoggerMessage(17, LogLevel.Debug, "Connection {ConnectionId} handed to protocol {Protocol}", EventName = "ProtocolSwitched")]
    public static partial void ProtocolSwitched(ILogger logger, string connectionId, string protocol);

    [LoggerMessage(18, LogLevel.Warning, "Connection {ConnectionId}: {Detail} Closing the connection. ({Count} so far on this listener)", EventName = "FrameRejected")]
    public static partial void FrameRejected(ILogger logger, string connectionId, string detail, long count);

    [LoggerMessage(19, LogLevel.Debug, "Connection {ConnectionId}: the peer closed inside a frame; {Length} bytes of it were discarded", EventName = "TruncatedFrame")]
    public static partial void TruncatedFrame(ILogger logger, string connectionId, long length);

    [LoggerMessage(20, LogLevel.Information, "Connection {ConnectionId}: {Detail} Dropped without a grain. ({Count} so far on this listener)", EventName = "TlsHandshakeFailed")]
    public static partial void TlsHandshakeFailed(ILogger logger, string connectionId, string detail, long count);

    [LoggerMessage(21, LogLevel.Warning, "Connection {ConnectionId}: {Detail} Aborting. ({Count} so far on this listener)", EventName = "WriteBufferLimit")]
    public static partial void WriteBufferLimit(ILogger logger, string connectionId, string detail, long count);

    [LoggerMessage(22, LogLevel.Warning, "Listener {Listener}: refused a connection from {RemoteEndPoint}: {Detail} ({Count} refused so far)", EventName = "ConnectionRefused")]
    public static partial void ConnectionRefused(ILogger logger, string listener, EndPoint? remoteEndPoint, string detail, long count);

    [LoggerMessage(23, LogLevel.Debug, "Connection {ConnectionId}: {Reason}: {Detail} Closing.", EventName = "ClockExpired")]
    public static partial void ClockExpired(ILogger logger, string connectionId, ConnectionCloseReason reason, string detail);

    [LoggerMessage(25, LogLevel.Warning, "Connection {ConnectionId}: {Reason}: {Detail} Closing. ({Count} so far on this listener)", EventName = "ClockLimitHit")]
    public static partial void ClockLimitHit(ILogger logger, string connectionId, ConnectionCloseReason reason, string detail, long count);

    [LoggerMessage(24, LogLevel.Warning, "Connection {ConnectionId}: {Detail} Dropped without a grain. ({Count} so far on this listener)", EventName = "ProxyHeaderRejected")]
    public static partial void ProxyHeaderRejected(ILogger logger, string connectionId, string detail, long count);

    [LoggerMessage(26, LogLevel.Debug, "Connection {ConnectionId}: {Kind}: {Detail}", EventName = "RejectionNotSampled")]
    public static partial void RejectionNotSampled(ILogger logger, string connectionId, string kind, string detail);

    [LoggerMessage(27, LogLevel.Debug, "Connection {ConnectionId}: its grain moved to silo {Silo}", EventName = "GrainMoved")]
    public static partial void GrainMoved(ILogger logger, string connectionId, string silo);

    [LoggerMessage(30, LogLevel.Information, "Silo {Silo} left the cluster after stopping gracefully; asking the grains of {Count} connection(s) the gateway last knew there where they are now", EventName = "GrainSiloStopped")]
    public static partial void GrainSiloStopped(ILogger logger, string silo, int count);

    [LoggerMessage(31, LogLevel.Debug, "Connection {ConnectionId}: the silo of its grain ({Silo}) left the cluster after stopping gracefully; asking the grain where it is", EventName = "LocatingGrain")]
    public static partial void LocatingGrain(ILogger logger, string connectionId, string silo);

    [LoggerMessage(32, LogLevel.Debug, "Connection {ConnectionId}: Orleans did not deliver a call to the grain (attempt {Attempt}: {Reason}); sending it again", EventName = "GrainCallRejected")]
    public static partial void GrainCallRejected(ILogger logger, string connectionId, int attempt, string reason);

    [LoggerMessage(28, LogLevel.Information, "{Count} connection grain(s) moved to the silos of their sockets; {Closed} could not move and close cleanly", EventName = "GrainsMovedAway")]
    public static partial void GrainsMovedAway(ILogger logger, int count, int closed);

    [LoggerMessage(16, LogLevel.Trace, "Connection {ConnectionId}: delivering {Length} bytes", EventName = "DataDelivered")]
    public static partial void DataDelivered(ILogger logger, string connectionId, int length);

    [LoggerMessage(29, LogLevel.Debug, "Connection {ConnectionId}: TLS started ({Protocol}, {Cipher})", EventName = "TlsStarted")]
    public static partial void TlsStarted(ILogger logger, string connectionId, string protocol, string cipher);

    [LoggerMessage(33, LogLevel.Information, "Cluster membership: {Count} active silos ({Active}); joined: {Joined}; left: {Left}", EventName = "MembershipChanged")]
    public static partial void MembershipChanged(ILogger logger, int count, string active, string joined, string left);

    [LoggerMessage(34, LogLevel.Information, "Connection {ConnectionId}: its grain did not answer ConnectionMade within {After}; sending it again (placed and looked up afresh)", EventName = "ConnectionMadeResent")]
    public static partial void ConnectionMadeResent(ILogger logger, string connectionId, TimeSpan after);

    [LoggerMessage(35, LogLevel.Information, "Connection {ConnectionId}: closed for falling behind group '{Group}' ({Backlog} bytes of group messages waiting for the peer, over MaxGroupBacklog)", EventName = "GroupMemberBehind")]
    public static partial void GroupMemberBehind(ILogger logger, string connectionId, string group, long backlog);

    [LoggerMessage(36, LogLevel.Warning, "Group message {Sequence} from silo {Source} to group '{Group}' came after its number was given up; not delivered, so that no member sees that silo's messages out of order", EventName = "GroupMessageLate")]
    public static partial void GroupMessageLate(ILogger logger, string group, string source, long sequence);

    [LoggerMessage(37, LogLevel.Warning, "{Count} group messages never came within {Timeout} of the ones numbered after them (their calls failed, or a link between silos broke): given up, and the messages behind them delivered", EventName = "GroupMessagesLost")]
    public static partial void GroupMessagesLost(ILogger logger, long count, TimeSpan timeout);

    [LoggerMessage(38, LogLevel.Debug, "Connection {ConnectionId}: its grain hibernates ({Bytes} bytes of state kept here)", EventName = "Hibernated")]
    public static partial void Hibernated(ILogger logger, string connectionId, int bytes);
}
