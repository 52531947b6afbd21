using System.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>Where a connection is in its life. Every move is made by <see cref="ConnectionLifecycle"/>.</summary>
internal enum ConnectionState
{
    /// <summary>Accepted: the PROXY header, the TLS handshake and the grain's <c>ConnectionMade</c> are under way.</summary>
    Opening,

    /// <summary>The grain has the connection; bytes flow both ways.</summary>
    Open,

    /// <summary>A graceful close: nothing more is read for the grain; what is queued is sent, then the FIN.</summary>
    Closing,

    /// <summary>Reset: what was queued is dropped and the socket is closed at once (an RST on TCP).</summary>
    Aborted,

    /// <summary>The grain was told and the socket is gone.</summary>
    Closed,
}

/// <summary>Whether the gateway may still call the connection's grain.</summary>
internal enum GrainLink
{
    /// <summary>The grain has the connection: callbacks go to it, and so does <c>ConnectionLost</c>.</summary>
    Attached,

    /// <summary>
    /// The grain closed the connection as it went away and told its protocol: the close in progress finishes without
    /// calling it again, and its silo's end is no reason to reset.
    /// </summary>
    Detached,

    /// <summary>No grain has the connection (it never had one, or its silo died): calling would activate a blank one.</summary>
    Lost,
}

/// <summary>
/// A connection's lifecycle, written down in one place:
/// <code>
/// Opening ──▶ Open ──▶ Closing ──▶ Closed
///    │          │         │           ▲
///    └──────────┴─────────┴─▶ Aborted ┘
/// </code>
/// <c>Opening → Closing</c> too (a refusal after the PROXY header that has a message to send first). The first close
/// or abort names the reason the connection ends with; nothing leaves <see cref="ConnectionState.Aborted"/> but the
/// end. Moves are asserted in Debug builds.
/// </summary>
/// <remarks>
/// The connection's lock guards every move; <see cref="State"/> and <see cref="Grain"/> may be read without it (the
/// heartbeat, a reply's check), as a single value that is at worst a move behind.
/// </remarks>
internal sealed class ConnectionLifecycle
{
    private volatile ConnectionState _state;
    private volatile GrainLink _grain;

    public ConnectionState State
    {
        get => _state;
        private set => _state = value;
    }

    public GrainLink Grain
    {
        get => _grain;
        private set => _grain = value;
    }

    /// <summary>Why the connection ends; <see cref="ConnectionCloseReason.None"/> while it is open.</summary>
    public ConnectionCloseReason Reason { get; private set; }

    public string? Detail { get; private set; }

    /// <summary>True once a close or an abort has been asked for: the pump stops reading for the grain.</summary>
    public bool IsEnding => State >= ConnectionState.Closing;

    public bool IsAborted => State is ConnectionState.Aborted || (State is ConnectionState.Closed && _wasAborted);

    private bool _wasAborted;

    /// <summary>The grain's <c>ConnectionMade</c> is done.</summary>
    public void Opened()
    {
        if (State == ConnectionState.Opening)
        {
            MoveTo(ConnectionState.Open);
        }
    }

    /// <summary>Asks for a graceful close; false when one is already on its way or the connection was aborted.</summary>
    public bool TryClose(ConnectionCloseReason reason, string? detail)
    {
        if (State is not (ConnectionState.Opening or ConnectionState.Open))
        {
            return false;
        }

        MoveTo(ConnectionState.Closing);
        Record(reason, detail);
        return true;
    }

    /// <summary>Resets the connection; false when it already was.</summary>
    /// <param name="reason">Why, unless a close or abort before it named one.</param>
    /// <param name="detail">Words for the log and <c>ConnectionLost</c>.</param>
    /// <param name="replaceReason">The abort's reason wins over a close's that was waiting for it (the send rate).</param>
    public bool TryAbort(ConnectionCloseReason reason, string? detail, bool replaceReason = false)
    {
        if (State is ConnectionState.Aborted or ConnectionState.Closed)
        {
            return false;
        }

        MoveTo(ConnectionState.Aborted);
        _wasAborted = true;
        if (replaceReason)
        {
            Reason = ConnectionCloseReason.None;
        }

        Record(reason, detail);
        return true;
    }

    /// <summary>The grain closed the connection as it went away (<see cref="GrainLink.Detached"/>).</summary>
    public void Detach() => Grain = GrainLink.Detached;

    /// <summary>No grain has the connection any more (<see cref="GrainLink.Lost"/>); a detached one stays detached.</summary>
    public void LoseGrain()
    {
        if (Grain == GrainLink.Attached)
        {
            Grain = GrainLink.Lost;
        }
    }

    /// <summary>The connection has ended: nothing more is read or sent; what remains is telling the grain.</summary>
    public void Ended()
    {
        if (State != ConnectionState.Closed)
        {
            // A connection whose run failed unexpectedly still ends; Debug builds say where it was.
            Debug.Assert(State is ConnectionState.Closing or ConnectionState.Aborted, $"A connection ended from {State}.");
            State = ConnectionState.Closed;
        }
    }

    private void MoveTo(ConnectionState next)
    {
        Debug.Assert(IsAllowed(State, next), $"A connection moved from {State} to {next}.");
        State = next;
    }

    private static bool IsAllowed(ConnectionState from, ConnectionState to) => (from, to) switch
    {
        (ConnectionState.Opening, ConnectionState.Open or ConnectionState.Closing or ConnectionState.Aborted) => true,
        (ConnectionState.Open, ConnectionState.Closing or ConnectionState.Aborted) => true,
        (ConnectionState.Closing, ConnectionState.Aborted) => true,
        _ => false,
    };

    private void Record(ConnectionCloseReason reason, string? detail)
    {
        if (Reason == ConnectionCloseReason.None)
        {
            Reason = reason;
            Detail = detail;
        }
    }
}
