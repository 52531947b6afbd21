namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// A connection's hibernation (<see cref="ProtocolListenerOptions.HibernateAfter"/>): when it is due, and the grain's
/// state while the grain sleeps. The state is handed back exactly once — to the pump's wake before its next callback,
/// or to a call by id that woke the grain first (<see cref="TakeState"/>).
/// </summary>
/// <remarks>Lock-free: the state is swapped atomically; the heartbeat asks at most once until the pump answers.</remarks>
internal sealed class ConnectionSleep(long afterMs, Action<int> counted)
{
    private byte[]? _state;
    private int _asked;
    private long _declinedAt = long.MinValue;

    private int _answers;

    /// <summary>Answers the grain gave to being asked to hibernate, either way (for tests and the status).</summary>
    public int Answers => Volatile.Read(ref _answers);

    /// <summary>The grain has been asked to hibernate and has not answered yet.</summary>
    public bool Asked => Volatile.Read(ref _asked) != 0;

    /// <summary>While the grain sleeps: its state is here.</summary>
    public bool IsAsleep => Volatile.Read(ref _state) is not null;

    /// <summary>
    /// Whether to ask the grain to hibernate now: quiet for the listener's time since the last byte either way and since
    /// the grain last declined. True once until <see cref="Answered"/>.
    /// </summary>
    public bool Due(long now, long lastActivity) =>
        afterMs > 0 && !IsAsleep && now - Math.Max(lastActivity, Volatile.Read(ref _declinedAt)) >= afterMs
        && Interlocked.CompareExchange(ref _asked, 1, 0) == 0;

    /// <summary>The grain answered: its state (it sleeps now) or null (it stays awake, and is asked after the next quiet spell).</summary>
    public void Answered(byte[]? state, long now)
    {
        if (state is null)
        {
            Volatile.Write(ref _declinedAt, now);
        }
        else if (Interlocked.Exchange(ref _state, state) is null)
        {
            counted(1);
        }

        Interlocked.Increment(ref _answers);
        Volatile.Write(ref _asked, 0);
    }

    /// <summary>Takes the state to wake the grain with; null when it is awake (or someone else is waking it).</summary>
    public byte[]? TakeState()
    {
        var state = Interlocked.Exchange(ref _state, null);
        if (state is not null)
        {
            counted(-1);
        }

        return state;
    }
}
