using Orleans.Concurrency;

namespace OrleansProtocol.Wire;

/// <summary>
/// The grain the gateway drives for one connection; one activation per connection, keyed by
/// <see cref="ConnectionInfo.ConnectionId"/>. Derive from <c>ProtocolGrain</c> rather than implementing this.
/// </summary>
/// <remarks>
/// <para>
/// Callbacks follow asyncio's state machine:
/// <c>ConnectionMade → DataReceived* → EofReceived? → ConnectionLost</c>, with <c>PauseWriting</c>/<c>ResumeWriting</c>
/// (strictly alternating) anywhere before <c>ConnectionLost</c>. The gateway keeps at most one callback in flight per
/// connection and awaits each before sending the next, so callbacks arrive in order on any topology; bytes that
/// arrive meanwhile are coalesced into the next <c>DataReceived</c>. Data is always received in the order it was
/// sent, with arbitrary chunking.
/// </para>
/// <para>
/// Each callback's reply carries the transport operations the callback made (<see cref="ProtocolReply.Batch"/>), so a
/// request/response protocol costs one grain call per read. The <c>bytesSent</c> arguments tell the grain
/// how many bytes the gateway has handed to the socket so far, which is how the grain's transport knows its write
/// buffer size. They count from when this protocol took the connection over: after <c>SetProtocol</c>, bytes the
/// earlier protocol left buffered are the new one's to drain (<see cref="ConnectionInfo.InheritedWriteBufferSize"/>).
/// </para>
/// </remarks>
[Alias("OrleansProtocol.IProtocolGrain")]
public interface IProtocolGrain : IGrainWithStringKey
{
    /// <summary>The connection was accepted; called exactly once, first. Reading starts only after it returns.</summary>
    /// <param name="connection">What the gateway knows about the connection.</param>
    /// <param name="transport">The gateway's observer for this connection: where unsolicited writes go.</param>
    [Alias("ConnectionMade")]
    Task<ProtocolReply> ConnectionMade(ConnectionInfo connection, ITransportObserver transport);

    /// <summary>Bytes from the peer, in order. Never empty, never after <see cref="EofReceived"/>.</summary>
    /// <param name="data">The bytes; the grain owns them.</param>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("DataReceived")]
    Task<ProtocolReply> DataReceived([Immutable] ReadOnlyMemory<byte> data, long bytesSent);

    /// <summary>
    /// Whole frames from the peer, in order, on a framed listener (never empty; several when they arrived together).
    /// </summary>
    /// <param name="frames">The frame bodies, without prefix or delimiter; the grain owns them.</param>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("FramesReceived")]
    Task<ProtocolReply> FramesReceived([Immutable] ReadOnlyMemory<byte>[] frames, long bytesSent);

    /// <summary>
    /// The peer shut down its write side. At most once. <see cref="ProtocolReply.KeepOpen"/> false closes the
    /// transport after flushing; true keeps it half-open until the protocol closes it.
    /// </summary>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("EofReceived")]
    Task<ProtocolReply> EofReceived(long bytesSent);

    /// <summary>The gateway's write buffer went over the high-water mark.</summary>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("PauseWriting")]
    Task<ProtocolReply> PauseWriting(long bytesSent);

    /// <summary>The gateway's write buffer drained to the low-water mark or below.</summary>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("ResumeWriting")]
    Task<ProtocolReply> ResumeWriting(long bytesSent);

    /// <summary>The TLS handshake the protocol asked for (<c>StartTls</c>) is done; reading resumes, encrypted.</summary>
    /// <param name="tls">What TLS negotiated.</param>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("TlsStarted")]
    Task<ProtocolReply> TlsStarted(TlsInfo tls, long bytesSent);

    /// <summary>
    /// The server asks the connection to close (its listener is closing, or the silo is stopping). The grain replies
    /// with everything it has written so far followed by a close, so nothing written before the request is lost.
    /// </summary>
    /// <param name="reason">Why the server closes the connection.</param>
    /// <param name="message">Detail for <paramref name="reason"/>.</param>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("CloseRequested")]
    Task<ProtocolReply> CloseRequested(ConnectionCloseReason reason, string? message, long bytesSent);

    /// <summary>
    /// The gateway asks where the grain is and whether it still holds the connection: the silo it last knew the grain
    /// on stopped gracefully and membership has declared it dead, but the grain may have moved with the connection and
    /// its notice still be on the way. The protocol is not called. The reply names the grain's silo
    /// (<see cref="ProtocolReply.GrainSilo"/>), or is <see cref="ProtocolReplyStatus.UnknownConnection"/> from an
    /// activation that does not have the connection.
    /// </summary>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far (see remarks).</param>
    [Alias("Locate")]
    Task<ProtocolReply> Locate(long bytesSent);

    /// <summary>
    /// The silo the grain lives on is stopping gracefully while its socket lives on another one (the gateway of the
    /// stopping silo asks). A protocol that can move migrates to <paramref name="targetSilo"/> with its connection;
    /// one that cannot is closed cleanly when the silo deactivates it.
    /// </summary>
    /// <param name="targetSilo">Where to move (<c>SiloAddress.ToParsableString()</c>): the socket's silo.</param>
    /// <returns>True when the grain is moving; false when it stays until it is closed.</returns>
    [Alias("LeaveSilo")]
    Task<bool> LeaveSilo(string targetSilo);

    /// <summary>
    /// Membership declared the silo holding this connection's socket dead (sent by the watch of the grain's own silo):
    /// the connection is gone, and the grain ends it.
    /// </summary>
    /// <param name="gatewaySilo">The dead silo (<c>SiloAddress.ToParsableString()</c>).</param>
    [Alias("GatewayLost")]
    Task GatewayLost(string gatewaySilo);

    /// <summary>
    /// The connection has been quiet for its listener's <c>HibernateAfter</c>: a protocol that hibernates, with no
    /// callback, timer, task or unsent write pending, hands the gateway its state (the transport's and the protocol's
    /// own fields, dehydrated) and deactivates; the gateway keeps the socket and the state. Not interleaved, so it runs
    /// between callbacks.
    /// </summary>
    /// <param name="bytesSent">Bytes the gateway has sent to the peer for this protocol so far.</param>
    /// <returns>The state, opaque to the gateway; or null when the grain stays awake (declined or busy).</returns>
    [Alias("Hibernate")]
    Task<byte[]?> Hibernate(long bytesSent);

    /// <summary>
    /// The gateway wakes a hibernated connection before its next callback: the new activation takes back the state
    /// <see cref="Hibernate"/> handed over, as if it had never slept. Interleaved, so a call by id that activated the
    /// grain meanwhile (and waits for its state) is answered.
    /// </summary>
    [AlwaysInterleave]
    [Alias("Wake")]
    Task Wake([Immutable] byte[] state);

    /// <summary>
    /// The connection ended. Called once per connection by the gateway; the grain delivers it to the protocol exactly
    /// once even if it already ended the connection itself (a callback that threw).
    /// </summary>
    /// <param name="reason">Why it ended.</param>
    /// <param name="message">Detail for <paramref name="reason"/>, such as the socket error.</param>
    [Alias("ConnectionLost")]
    Task ConnectionLost(ConnectionCloseReason reason, string? message);
}
