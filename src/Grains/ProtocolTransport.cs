using System.Buffers;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// The grain's view of its connection: asyncio's <c>Transport</c> in .NET casing. Every method is non-blocking and
/// records the operation; the operations travel to the gateway in the order they were made, with the reply of the
/// callback that made them or, outside a callback, through the gateway's observer.
/// </summary>
/// <remarks>
/// Use it only from the grain's own turns (callbacks, timers, grain methods), like any grain state.
/// </remarks>
public sealed partial class ProtocolTransport
{
    /// <summary>asyncio's default high-water mark for the write buffer: 64 KiB.</summary>
    public const int DefaultWriteBufferHigh = WriteBufferDefaults.High;

    /// <summary>asyncio's default low-water mark for the write buffer: a quarter of the high-water mark, 16 KiB.</summary>
    public const int DefaultWriteBufferLow = WriteBufferDefaults.Low;

    // asyncio logs from the fifth write after the connection is gone (LOG_THRESHOLD_FOR_CONNLOST_WRITES).
    private const int DroppedWriteLogThreshold = 5;

    private readonly ProtocolGrain _owner;

    // One delegate for the connection's life: a method group converted per WriteFrame would allocate per frame.
    private Framing.FrameCodec.SpanWriter? _write;

    // Operations recorded since the last batch was sealed: bytes copied into _data, or one buffer handed over as it is.
    private ArrayBufferWriter<byte>? _data;
    private ReadOnlyMemory<byte> _handed;
    private TransportBatchFlags _flags;
    private ConnectionCloseReason _closeReason;
    private string? _closeMessage;

    private int _high = DefaultWriteBufferHigh;
    private int _low = DefaultWriteBufferLow;
    private long _bytesWritten;
    private long _bytesTaken;
    private long _bytesSent;
    private bool _closing;
    private bool _eofWritten;
    private bool _readingPaused;
    private bool _startTls;
    private ClientTls? _startTlsClient;
    private bool _lost;
    private bool _handedOff;
    private string? _newProtocol;
    private List<string>? _joins;
    private List<string>? _leaves;
    private ReadOnlyMemory<byte> _handOffData;
    private int _droppedWrites;
    private string? _movedTo;

    internal ProtocolTransport(ProtocolGrain owner, ConnectionInfo connection)
    {
        _owner = owner;
        Connection = connection;
        _bytesWritten = connection.InheritedWriteBufferSize;
        _bytesTaken = connection.InheritedWriteBufferSize;
    }

    /// <summary>What the gateway knows about the connection.</summary>
    public ConnectionInfo Connection { get; private set; }

    /// <summary>The highest batch sequence number assigned so far.</summary>
    internal long LastSequence { get; private set; }

    /// <summary>The bytes of writes not yet sealed into a batch (they move with the grain).</summary>
    internal int PendingBytes => PendingMemory.Length;

    /// <summary>
    /// True once <see cref="Close()"/> or <see cref="Abort()"/> was called, the connection was lost, or it was handed
    /// to another protocol with <see cref="SetProtocol{TGrain}"/>.
    /// </summary>
    public bool IsClosing => _closing || _lost || _handedOff;

    /// <summary>True once the connection was handed to another protocol.</summary>
    internal bool HandedOff => _handedOff;

    /// <summary>True unless reading is paused or the transport is closing (asyncio <c>is_reading</c>).</summary>
    public bool IsReading => !IsClosing && !_readingPaused && !_startTls;

    /// <summary>
    /// True on plain TCP, which can half-close with <see cref="WriteEof"/>; false on TLS, as asyncio (asyncio <c>can_write_eof</c>).
    /// </summary>
    public bool CanWriteEof => Connection.Tls is null;

    /// <summary>
    /// Queues <paramref name="data"/> to be sent (asyncio <c>write</c>); never blocks. The bytes are copied.
    /// Writes after <see cref="Close()"/>, <see cref="Abort()"/> or connection loss are dropped (logged at the fifth, as asyncio, then every 1,000th).
    /// A write that would take <see cref="GetWriteBufferSize"/> past the listener's hard cap
    /// (<see cref="ConnectionInfo.MaxWriteBufferSize"/>) aborts the connection with
    /// <see cref="ConnectionCloseReason.WriteBufferLimit"/> instead. A protocol that writes only in callbacks never
    /// meets it with a peer that reads (the gateway holds input while writing is paused, so the buffer stays within
    /// the high-water mark plus one callback's writes); one that writes from timers or tasks does when it ignores
    /// <c>PauseWriting</c> and outruns its peer, or when a single reply is larger than the cap.
    /// </summary>
    /// <exception cref="InvalidOperationException">After <see cref="WriteEof"/>.</exception>
    public void Write(ReadOnlySpan<byte> data)
    {
        if (Admit(data.Length))
        {
            Pending(data.Length).Write(data);
            Written(data.Length);
        }
    }

    /// <summary>
    /// Queues <paramref name="data"/> as <see cref="Write(ReadOnlySpan{byte})"/> does; with <paramref name="copy"/>
    /// false the buffer is handed over instead of copied, and the caller must not change it afterwards. The bytes
    /// <c>DataReceived</c> and <c>FramesReceived</c> were given qualify (the gateway made them for that call alone), so
    /// an echo costs no copy; a pooled or reused buffer does not.
    /// </summary>
    /// <exception cref="InvalidOperationException">After <see cref="WriteEof"/>.</exception>
    public void Write(ReadOnlyMemory<byte> data, bool copy)
    {
        if (copy)
        {
            Write(data.Span);
            return;
        }

        if (!Admit(data.Length))
        {
            return;
        }

        if (_data is null && _handed.IsEmpty)
        {
            // The common reply, one buffer: it travels to the gateway as it is.
            _handed = data;
        }
        else
        {
            Pending(data.Length).Write(data.Span);
        }

        Written(data.Length);
    }

    /// <summary>
    /// Writes <paramref name="payload"/> as one frame of the listener's framing (<see cref="ConnectionInfo.Framing"/>):
    /// with its length prefix, or followed by its delimiter.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection is not framed.</exception>
    /// <exception cref="ArgumentException">The payload does not fit the prefix, or contains the delimiter.</exception>
    public void WriteFrame(ReadOnlySpan<byte> payload) => Framing.FrameCodec.Encode(Connection.Framing, payload, _write ??= Write);

    /// <summary>Writes each buffer in turn, as one send where possible (asyncio <c>writelines</c>).</summary>
    public void WriteLines(IEnumerable<ReadOnlyMemory<byte>> buffers)
    {
        ArgumentNullException.ThrowIfNull(buffers);
        foreach (var buffer in buffers)
        {
            Write(buffer.Span);
        }
    }

    /// <summary>
    /// Half-closes the connection once everything written so far is sent (asyncio <c>write_eof</c>): the peer reads
    /// EOF and can still send. Later <see cref="Write(ReadOnlySpan{byte})"/> calls throw.
    /// </summary>
    /// <exception cref="NotSupportedException">On a TLS connection (<see cref="CanWriteEof"/> is false), as asyncio.</exception>
    public void WriteEof()
    {
        if (!CanWriteEof)
        {
            throw new NotSupportedException("TLS connections cannot half-close: WriteEof is not supported (CanWriteEof is false).");
        }

        if (IsClosing || _eofWritten)
        {
            return;
        }

        _eofWritten = true;
        _flags |= TransportBatchFlags.WriteEof;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Adds this connection to the group <paramref name="name"/> (<see cref="IConnectionGroup"/>) right after what was
    /// written so far: the group's messages follow it, as a subscription's confirmation comes before the first message.
    /// Applied by the gateway with this turn's writes; idempotent. Ignored once the transport is closing.
    /// </summary>
    public void JoinGroup(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (IsClosing)
        {
            return;
        }

        _leaves?.Remove(name);
        (_joins ??= []).Add(name);
        _flags |= TransportBatchFlags.Groups;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Takes this connection out of the group <paramref name="name"/> before what is written next in this turn: no
    /// message of the group comes after it, as none follows an unsubscription's confirmation. Idempotent.
    /// </summary>
    public void LeaveGroup(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (_lost)
        {
            return;
        }

        _joins?.Remove(name);
        (_leaves ??= []).Add(name);
        _flags |= TransportBatchFlags.Groups;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Closes the connection after everything written so far is sent (asyncio <c>close</c>). Reading stops at once;
    /// <c>ConnectionLost(null)</c> follows. Idempotent.
    /// </summary>
    public void Close() => Close(ConnectionCloseReason.LocalClose, null);

    /// <summary>
    /// Like <see cref="Close()"/>, recording why: the reason and message appear in the gateway's close log line and
    /// reach <c>ConnectionLost</c> (as an exception unless the reason is a clean one).
    /// </summary>
    public void Close(ConnectionCloseReason reason, string? message)
    {
        if (IsClosing)
        {
            return;
        }

        _closing = true;
        _flags |= TransportBatchFlags.Close;
        _closeReason = reason;
        _closeMessage = message;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Closes the connection at once (asyncio <c>abort</c>): data not yet sent is discarded and the socket is reset;
    /// <c>ConnectionLost(null)</c> follows.
    /// </summary>
    public void Abort() => Abort(ConnectionCloseReason.LocalAbort, null);

    internal void Abort(ConnectionCloseReason reason, string? message)
    {
        if (_lost || (_flags & TransportBatchFlags.Abort) != 0)
        {
            return;
        }

        _closing = true;
        _data = null;
        _handed = default;
        _joins = null;
        _flags = TransportBatchFlags.Abort;
        _closeReason = reason;
        _closeMessage = message;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Stops delivery of <c>DataReceived</c> and <c>EofReceived</c> at once (asyncio <c>pause_reading</c>): data already on its way
    /// is held by the gateway, which stops reading the socket so TCP pushes back on the peer. Idempotent.
    /// </summary>
    public void PauseReading()
    {
        if (IsClosing || _readingPaused)
        {
            return;
        }

        _readingPaused = true;
        _flags = (_flags & ~TransportBatchFlags.ResumeReading) | TransportBatchFlags.PauseReading;
        _owner.OnTransportChanged();
    }

    /// <summary>Resumes delivery after <see cref="PauseReading"/> (asyncio <c>resume_reading</c>). Idempotent.</summary>
    public void ResumeReading()
    {
        if (IsClosing || !_readingPaused)
        {
            return;
        }

        _readingPaused = false;
        _flags = (_flags & ~TransportBatchFlags.PauseReading) | TransportBatchFlags.ResumeReading;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// Hands the connection to a new <typeparamref name="TGrain"/> activation (asyncio <c>set_protocol</c>), for upgrades
    /// such as STARTTLS or a WebSocket hand-off. Everything this grain wrote so far is sent first; the new grain gets
    /// <c>ConnectionMade</c>, then <paramref name="pendingData"/> (bytes this protocol received but leaves to the new
    /// one), then everything read afterwards, in order. This grain gets no further callbacks, not even
    /// <c>ConnectionLost</c>; its tasks and timers are cancelled and it deactivates.
    /// </summary>
    /// <exception cref="InvalidOperationException">Outside a protocol callback, or the transport is closing.</exception>
    public void SetProtocol<TGrain>(ReadOnlySpan<byte> pendingData = default)
        where TGrain : IProtocolGrain
    {
        if (IsClosing)
        {
            throw new InvalidOperationException("Cannot hand over a connection that is closing.");
        }

        if (!_owner.InCallback)
        {
            throw new InvalidOperationException("SetProtocol is allowed only inside a protocol callback (DataReceived, say).");
        }

        _newProtocol = _owner.GetGrainTypeName(typeof(TGrain));
        _handOffData = pendingData.ToArray();
        _handedOff = true;
        _flags |= TransportBatchFlags.SetProtocol;
    }

    /// <summary>
    /// Upgrades the live connection to TLS (asyncio <c>loop.start_tls</c>; SMTP's, IMAP's and XMPP's STARTTLS). What this
    /// protocol wrote before is sent in plaintext first (the "go ahead" line, typically); then the handshake runs,
    /// bounded by the listener's <c>Tls.HandshakeTimeout</c>, and <c>TlsStarted</c> follows, after which everything goes
    /// encrypted. Reading stops at once: bytes that arrived after the command that led here are never delivered (a
    /// client may not send before the handshake — STARTTLS command injection), and a failed handshake closes the
    /// connection with <see cref="ConnectionCloseReason.ProtocolError"/>. On an accepted connection the server side
    /// runs with the listener's certificate (<c>Tls.StartTls</c>); on an outbound one, pass <paramref name="client"/>.
    /// </summary>
    /// <param name="client">On an outbound connection: the server name to validate (SNI) and whether to trust any certificate.</param>
    /// <exception cref="InvalidOperationException">The connection is already TLS, is closing, or is upgrading.</exception>
    public void StartTls(ClientTls? client = null)
    {
        if (Connection.Tls is not null || _startTls)
        {
            throw new InvalidOperationException("The connection is already TLS (or upgrading to it).");
        }

        if (IsClosing)
        {
            throw new InvalidOperationException("Cannot start TLS on a connection that is closing.");
        }

        _startTls = true;
        _startTlsClient = client;
        _flags |= TransportBatchFlags.StartTls;
        _owner.OnTransportChanged();
    }

    /// <summary>The handshake asked for by <see cref="StartTls"/> is done: the connection is TLS from here on.</summary>
    internal void OnTlsStarted(TlsInfo tls)
    {
        Connection = Connection with { Tls = tls };
        _startTls = false;
    }

    /// <summary>
    /// Sets the write-buffer watermarks (asyncio <c>set_write_buffer_limits</c>). With only <paramref name="high"/>,
    /// low is high/4; with only <paramref name="low"/>, high is 4×low; with neither, 64 KiB and 16 KiB.
    /// <c>PauseWriting</c> follows when the buffer is strictly over high, <c>ResumeWriting</c> when it is at or below low.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Unless high ≥ low ≥ 0.</exception>
    public void SetWriteBufferLimits(int? high = null, int? low = null)
    {
        var newHigh = high ?? (low is { } l ? checked(4 * l) : DefaultWriteBufferHigh);
        var newLow = low ?? newHigh / 4;
        if (!(newHigh >= newLow && newLow >= 0))
        {
            throw new ArgumentOutOfRangeException(nameof(high), $"high ({newHigh}) must be >= low ({newLow}) must be >= 0.");
        }

        _high = newHigh;
        _low = newLow;
        _flags |= TransportBatchFlags.SetWriteBufferLimits;
        _owner.OnTransportChanged();
    }

    /// <summary>The write-buffer watermarks, in asyncio's order (low, high).</summary>
    public (int Low, int High) GetWriteBufferLimits() => (_low, _high);

    /// <summary>
    /// Bytes written but not yet handed to the socket, as far as the grain knows: everything written minus what the
    /// gateway last reported as sent (it reports with every callback). In <c>PauseWriting</c> and <c>ResumeWriting</c>
    /// it counts from what had been sent when the gateway paused or resumed, as asyncio's protocol sees it then: over
    /// the high-water mark, and at most the low one (plus what the protocol wrote since).
    /// </summary>
    public long GetWriteBufferSize() => _lost ? 0 : _bytesWritten - (_flowBytesSent ?? _bytesSent);

    // Set for the length of a PauseWriting/ResumeWriting callback: the bytes sent when that change happened. A push's
    // reply may have told the grain of later sends before the callback runs.
    private long? _flowBytesSent;

    /// <summary>Runs a write-flow callback with the buffer seen as it was at the change.</summary>
    internal async Task InFlowChangeAsync(long bytesSent, Func<Task> callback)
    {
        _flowBytesSent = bytesSent;
        try
        {
            await callback();
        }
        finally
        {
            _flowBytesSent = null;
        }
    }

    /// <summary>
    /// Optional information about the connection (asyncio <c>get_extra_info</c>); see <see cref="ExtraInfoKeys"/> for
    /// the names. Unknown names give <paramref name="defaultValue"/>.
    /// </summary>
    public object? GetExtraInfo(string name, object? defaultValue = null) => name switch
    {
        ExtraInfoKeys.PeerName => (object?)Connection.RemoteEndPoint ?? Connection.RemotePath ?? defaultValue,
        ExtraInfoKeys.SockName => (object?)Connection.LocalEndPoint ?? Connection.LocalPath ?? defaultValue,
        ExtraInfoKeys.SslProtocol => Connection.Tls?.Protocol ?? defaultValue,
        ExtraInfoKeys.Cipher => Connection.Tls?.Cipher ?? defaultValue,
        ExtraInfoKeys.PeerCert => Connection.Tls?.PeerCertificate is { } der
            ? System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(der)
            : defaultValue,
        ExtraInfoKeys.SslObject or ExtraInfoKeys.SslContext => (object?)Connection.Tls ?? defaultValue,
        ExtraInfoKeys.ConnectionId => Connection.ConnectionId,
        ExtraInfoKeys.ListenerName => Connection.ListenerName,
        _ => defaultValue,
    };

    /// <summary>
    /// True while what the gateway was handed and has not sent is over the high-water mark: unsolicited pushes with
    /// data wait (<c>UnsolicitedSender</c>). As exact as the last bytes-sent report.
    /// </summary>
    internal bool IsOverHighWater => !_lost && _bytesTaken - _bytesSent > _high;

    internal void OnBytesSent(long bytesSent)
    {
        if (bytesSent > _bytesSent)
        {
            _bytesSent = bytesSent;
            _owner.OnBytesSentReported();
        }
    }

    /// <summary>The connection is gone: later writes are dropped and nothing new is recorded.</summary>
    internal void MarkLost() => _lost = true;

    /// <summary>Marks the transport closing without a Close operation: the gateway closes it (EOF not kept open).</summary>
    internal void MarkClosing() => _closing = true;

}
