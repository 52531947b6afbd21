using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// What the connection reads from and writes to: a duplex pipe, whatever is under it — a socket (Kestrel's input
/// pipe, writes straight to the kernel), an in-memory pipe pair, or TLS over either. The pump reads
/// <see cref="Input"/>, the writer sends through <see cref="SendAsync"/> (the output pipe, or the socket itself), and
/// an opening step (TLS) swaps in a transport of its own, as Bedrock's connection middleware swaps
/// <c>context.Transport</c>.
/// </summary>
/// <remarks>
/// A socket's output does not go through Kestrel's output pipe: asyncio's contract needs the exact count of bytes the
/// kernel has not yet taken (the write-buffer watermarks) and half-close (<c>write_eof</c>), and completing Kestrel's
/// output pipe disposes the socket. A write completes when the kernel has taken every byte.
/// </remarks>
internal sealed class ConnectionTransport : IDuplexPipe
{

    private readonly ConnectionContext _context;
    private readonly Socket? _socket;
    private readonly SslStream? _tls;

    private PipeWriter? _output;

    private ConnectionTransport(ConnectionContext context, Socket? socket, PipeReader input, PipeWriter? output, SslStream? tls)
    {
        _context = context;
        _socket = socket;
        _tls = tls;
        Input = input;
        _output = output;
    }

    /// <summary>The accepted connection as it came: a socket, or an in-memory pipe pair (no socket).</summary>
    public static ConnectionTransport Accept(ConnectionContext context, bool noDelay)
    {
        var socket = context.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (socket is null)
        {
            // In memory: the output pipe's pause threshold stands in for the kernel's send buffer; completing it is the FIN.
            return new ConnectionTransport(context, null, context.Transport.Input, context.Transport.Output, null);
        }

        if (socket.ProtocolType == ProtocolType.Tcp)
        {
            // TCP only: a Unix socket has no Nagle to turn off.
            socket.NoDelay = noDelay;
        }

        // A socket's output pipe is made only if something asks for it: SendAsync goes to the socket directly.
        return new ConnectionTransport(context, socket, context.Transport.Input, null, null);
    }

    /// <summary>TLS over this transport, once its handshake is done: reads and writes go through the stream.</summary>
    public ConnectionTransport WithTls(SslStream tls) => new(
        _context,
        _socket,
        PipeReader.Create(tls, new StreamPipeReaderOptions(leaveOpen: true)),
        PipeWriter.Create(tls, new StreamPipeWriterOptions(leaveOpen: true)),
        tls);

    public PipeReader Input { get; }

    public PipeWriter Output => _output ??= PipeWriter.Create(new NetworkStream(_socket!, ownsSocket: false), new StreamPipeWriterOptions(leaveOpen: true));

    /// <summary>The bytes under any TLS: what a TLS handshake runs on.</summary>
    public IDuplexPipe Raw => _context.Transport;

    /// <summary>Whether the transport is TLS (which cannot half-close: asyncio refuses <c>write_eof</c> there).</summary>
    public bool IsTls => _tls is not null;

    /// <summary>Sends <paramref name="data"/>; completes when the kernel (or the in-memory peer's pipe) has taken it.</summary>
    /// <exception cref="ConnectionResetException">The in-memory peer closed its end.</exception>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> data)
    {
        if (_tls is null && _socket is not null)
        {
            // Straight to the kernel: a PipeWriter over a NetworkStream here cost 3.6 µs of CPU per echo request more
            // (docs/performance.md). A send completes when the kernel took it all: the write-buffer count stays exact.
            while (!data.IsEmpty)
            {
                data = data[await _socket.SendAsync(data, SocketFlags.None)..];
            }

            return;
        }

        var flushed = await Output.WriteAsync(data);
        if (flushed.IsCompleted)
        {
            throw new ConnectionResetException("The peer closed its end.");
        }
    }

    /// <summary>Half-close: FIN after what was sent; reading goes on.</summary>
    public void ShutdownOutput()
    {
        try
        {
            if (_socket is null)
            {
                _context.Transport.Output.Complete();
                return;
            }

            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already shut (a WriteEof before the close) or reset by the peer: nothing more to send either way.
        }
    }

    /// <summary>
    /// The graceful end of the output: on TLS, close_notify and Kestrel's own close (FIN after the data); otherwise
    /// the FIN. Returns whether the socket should linger, reading until the peer closes too.
    /// </summary>
    public async ValueTask<bool> CloseOutputAsync()
    {
        if (_tls is not null)
        {
            try
            {
                // close_notify, so the peer can tell a clean close from a truncation.
                await _tls.ShutdownAsync();
            }
            catch (Exception)
            {
                // The peer may be gone already; the socket closes below either way.
            }

            // Completing Kestrel's output makes it send what it holds, then shut the socket down and close it.
            await _context.Transport.Output.CompleteAsync();
            return false;
        }

        // Everything is in the kernel: FIN after it. The socket is closed only once the peer has closed too (or the
        // linger passed), reading what it still sends, so that closing on unread bytes does not turn into a reset that
        // could destroy the last of the output at the peer.
        ShutdownOutput();
        return true;
    }

    /// <summary>Resets the connection: an RST on TCP, as asyncio's <c>abort</c> and Twisted's <c>abortConnection</c>.</summary>
    public void Reset()
    {
        try
        {
            // Linger 0 makes close send RST. On TCP only: a Unix socket has no RST (the peer reads an end of stream).
            if (_socket is { ProtocolType: ProtocolType.Tcp })
            {
                _socket.LingerState = new LingerOption(true, 0);
            }

            _socket?.Dispose();
        }
        catch (ObjectDisposedException)
        {
        }

        _context.Abort(new ConnectionAbortedException("The connection was aborted."));
    }
}
