using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>The protocol's own receive clocks, run by the gateway.</summary>
public sealed partial class ProtocolTransport
{
    // The values the next batch carries (zero: off), with SetReceiveTimeout / SetReceiveDeadline in _flags.
    private TimeSpan _receiveTimeout;
    private TimeSpan _receiveDeadline;

    /// <summary>
    /// Closes the connection when the peer sends nothing for <paramref name="timeout"/>, as MQTT's keepalive, Redis'
    /// <c>timeout</c> or SMTP's command timeout do; <c>null</c> turns it off. Only what the peer sends counts (the
    /// listener's <c>IdleTimeout</c> counts both ways), and not while the protocol has paused reading. The gateway runs
    /// it on its clock, as it runs the listener's: no grain timer, and it keeps counting while the grain hibernates
    /// or moves. When it runs out the protocol hears <see cref="ProtocolGrain.CloseRequested"/> and then
    /// <see cref="ProtocolGrain.ConnectionLost"/> with <see cref="ConnectionCloseReason.ReceiveTimeout"/>.
    /// </summary>
    /// <remarks>
    /// Checked on the listener's heartbeat, which ticks at a quarter of its shortest clock and at least once a second:
    /// a timeout may run out up to that much late, never early. The last call wins.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeout"/> is zero or negative.</exception>
    public void SetReceiveTimeout(TimeSpan? timeout)
    {
        _receiveTimeout = Checked(timeout, nameof(timeout));
        _flags |= TransportBatchFlags.SetReceiveTimeout;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Closes the connection unless the protocol clears this deadline (<c>SetReceiveDeadline(null)</c>) within
    /// <paramref name="within"/>: the time a whole message may take, however steadily its bytes come ("CONNECT within
    /// 10 s of connecting", a request's headers within 30 s). Setting it again starts it again. Run by the gateway's
    /// clock, as <see cref="SetReceiveTimeout"/>, and counted from when the gateway applies it; when it passes the
    /// protocol hears <see cref="ProtocolGrain.CloseRequested"/> and then <see cref="ProtocolGrain.ConnectionLost"/>
    /// with <see cref="ConnectionCloseReason.ReceiveDeadline"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="within"/> is zero or negative.</exception>
    public void SetReceiveDeadline(TimeSpan? within)
    {
        _receiveDeadline = Checked(within, nameof(within));
        _flags |= TransportBatchFlags.SetReceiveDeadline;
        _owner.OnTransportChanged();
    }

    private static TimeSpan Checked(TimeSpan? value, string name) => value switch
    {
        null => TimeSpan.Zero,
        { } infinite when infinite == Timeout.InfiniteTimeSpan => TimeSpan.Zero,
        { } positive when positive > TimeSpan.Zero => positive,
        _ => throw new ArgumentOutOfRangeException(name, value, "A receive clock must be positive; pass null to turn it off."),
    };
}
