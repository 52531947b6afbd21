namespace OrleansProtocol;

/// <summary>
/// Why a connection ended. The one close-reason type of the project: passed to
/// <c>ConnectionLost</c>, written to the gateway's close log line and (later) tagged on metrics.
/// </summary>
public enum ConnectionCloseReason
{
    /// <summary>The connection has not ended.</summary>
    None = 0,

    /// <summary>The peer closed its write side and the protocol let the transport close (<c>EofReceived</c> returned false).</summary>
    PeerClosed = 1,

    /// <summary>The peer reset the connection, or a send or receive failed.</summary>
    PeerReset = 2,

    /// <summary>The protocol called <c>Close()</c>: buffered data was flushed, then the socket closed.</summary>
    LocalClose = 3,

    /// <summary>The protocol called <c>Abort()</c>: buffered data was discarded and the socket reset.</summary>
    LocalAbort = 4,

    /// <summary>A protocol callback threw; the exception is what <c>ConnectionLost</c> receives.</summary>
    ApplicationError = 5,

    /// <summary>The gateway could not reach the connection's grain (silo lost, call timed out, activation lost).</summary>
    GrainUnavailable = 6,

    /// <summary>The grain could not reach the gateway that holds the socket.</summary>
    GatewayUnavailable = 7,

    /// <summary>The silo is stopping; the gateway closed the connection as part of its drain.</summary>
    ServerShutdown = 8,

    /// <summary>A frame or message was larger than the configured maximum.</summary>
    FrameTooLarge = 9,

    /// <summary>The protocol rejected what the peer sent.</summary>
    ProtocolError = 10,

    /// <summary>Nothing happened for longer than the configured idle timeout (a UDP peer that went quiet, say).</summary>
    IdleTimeout = 11,

    /// <summary>
    /// What the protocol wrote and the peer had not taken passed the hard cap (<c>MaxWriteBufferSize</c>): a single
    /// reply larger than the cap, or a protocol that ignored <c>PauseWriting</c> and outran its peer.
    /// </summary>
    WriteBufferLimit = 12,

    /// <summary>The connection was refused: a connection limit (per listener or per client address) was reached.</summary>
    ConnectionLimit = 13,

    /// <summary>The peer sent nothing within the first-data deadline (<c>FirstDataTimeout</c>) after connecting.</summary>
    FirstDataTimeout = 14,

    /// <summary>
    /// The peer sent an incomplete frame slower than the minimum receive rate (<c>MinReceiveDataRate</c>): a slowloris.
    /// </summary>
    ReceiveRateTooLow = 15,

    /// <summary>
    /// The peer read what the gateway had buffered for it slower than the minimum send rate (<c>MinSendDataRate</c>).
    /// </summary>
    SendRateTooLow = 16,

    /// <summary>
    /// The peer sent nothing for longer than the protocol's own receive timeout (<c>Transport.SetReceiveTimeout</c>:
    /// MQTT's keepalive, Redis' <c>timeout</c>).
    /// </summary>
    ReceiveTimeout = 17,

    /// <summary>
    /// The protocol's deadline for a whole message passed before it cleared it (<c>Transport.SetReceiveDeadline</c>:
    /// "CONNECT within 10 s", a request's headers within 30 s).
    /// </summary>
    ReceiveDeadline = 18,
}

/// <summary>Helpers for <see cref="ConnectionCloseReason"/>.</summary>
public static class ConnectionCloseReasonExtensions
{
    /// <summary>
    /// True for the reasons asyncio reports as <c>connection_lost(None)</c>: a regular EOF, or a close or abort
    /// made by this side. Every other reason reaches <c>ConnectionLost</c> as an exception.
    /// </summary>
    public static bool IsClean(this ConnectionCloseReason reason) =>
        reason is ConnectionCloseReason.PeerClosed or ConnectionCloseReason.LocalClose or ConnectionCloseReason.LocalAbort;
}
