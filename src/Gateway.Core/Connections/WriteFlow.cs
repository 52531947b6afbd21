namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// asyncio's write flow control for one connection: the bytes accepted from the protocol and not yet handed to the
/// kernel, the high- and low-water marks, and when the protocol must be told to pause or may resume — pause when the
/// buffer is strictly over high, resume when it is at or below low, the two strictly alternating — plus the hard cap
/// (<c>MaxWriteBufferSize</c>) that back-pressure cannot bound.
/// </summary>
/// <remarks>Not thread-safe: the connection's lock guards it.</remarks>
internal sealed class WriteFlow(long? cap)
{
    /// <summary>Bytes accepted and not yet handed to the socket (asyncio's write buffer size).</summary>
    public long Buffered { get; private set; }

    /// <summary>The largest <see cref="Buffered"/> seen.</summary>
    public long Peak { get; private set; }

    public int High { get; private set; } = WriteBufferDefaults.High;

    public int Low { get; private set; } = WriteBufferDefaults.Low;

    /// <summary>Whether the protocol was last told to pause (and not yet to resume).</summary>
    public bool Paused { get; private set; }

    /// <summary>Whether <see cref="Buffered"/> is over the hard cap.</summary>
    public bool OverCap => Buffered > cap;

    /// <summary>The hard cap, or null for none.</summary>
    public long? Cap => cap;

    /// <summary>Bytes accepted for the peer.</summary>
    public void Add(long bytes)
    {
        Buffered += bytes;
        Peak = Math.Max(Peak, Buffered);
    }

    /// <summary>Bytes the socket took.</summary>
    public void Sent(long bytes) => Buffered -= bytes;

    /// <summary>The connection ended: nothing is waiting any more.</summary>
    public void Clear() => Buffered = 0;

    /// <summary>The protocol's <c>set_write_buffer_limits</c>.</summary>
    public void SetLimits(int high, int low) => (High, Low) = (high, low);

    /// <summary>A new protocol takes the connection over: asyncio's default marks, not paused (what is buffered stays).</summary>
    public void Restart()
    {
        (High, Low) = (WriteBufferDefaults.High, WriteBufferDefaults.Low);
        Paused = false;
    }

    /// <summary>
    /// Whether the protocol must now be told something: true to pause, false to resume, null for nothing. The state
    /// moves with the answer, so notifications alternate strictly.
    /// </summary>
    public bool? Update()
    {
        if (!Paused && Buffered > High)
        {
            Paused = true;
            return true;
        }

        if (Paused && Buffered <= Low)
        {
            Paused = false;
            return false;
        }

        return null;
    }
}
