using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using OrleansProtocol.Gateway;

namespace OrleansProtocol.Testing;

/// <summary>
/// A client of a <see cref="ProtocolTestHost"/>, in memory or over a socket: write, read exactly / a line / to the
/// end, half-close, reset, and await the connection's end with the reason the gateway recorded. Every read waits at
/// most <see cref="Timeout"/>, so a protocol that stays silent fails the test instead of hanging it.
/// </summary>
public sealed class ProtocolTestClient : IAsyncDisposable
{
    private readonly ProtocolTestHost _host;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly InMemoryConnection? _memory;
    private readonly Socket? _socket;
    private readonly Task<AcceptedConnection> _accepted;
    private bool _disposed;

    internal ProtocolTestClient(ProtocolTestHost host, InMemoryConnection connection, Task<AcceptedConnection> accepted)
    {
        (_host, _memory, _accepted) = (host, connection, accepted);
        (_input, _output) = (connection.Input, connection.Output);
        LocalEndPoint = connection.LocalEndPoint;
    }

    internal ProtocolTestClient(ProtocolTestHost host, Socket socket, Task<AcceptedConnection> accepted)
    {
        (_host, _socket, _accepted) = (host, socket, accepted);
        var stream = new NetworkStream(socket, ownsSocket: false);
        (_input, _output) = (PipeReader.Create(stream), PipeWriter.Create(stream));
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    /// <summary>How long a read or a wait may take before it fails the test. 30 seconds unless set.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The client's address as the server sees it.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The connection as its grain sees it (<see cref="ConnectionInfo.ConnectionId"/>, addresses), once the gateway took it on.</summary>
    public async Task<ConnectionInfo> ConnectionAsync() => (await _accepted.WaitAsync(Timeout)).Info;

    /// <summary>Every callback the connection's grain has received so far, in order (<c>ConnectionMade</c>, <c>DataReceived</c>...).</summary>
    public IReadOnlyList<ProtocolCallback> Callbacks =>
        _accepted.IsCompletedSuccessfully ? _host.Callbacks.For(_accepted.Result.Info.ConnectionId) : [];

    /// <summary>Sends <paramref name="data"/>.</summary>
    /// <exception cref="Microsoft.AspNetCore.Connections.ConnectionResetException">The server reset the connection (in memory), as a socket's send fails after a reset.</exception>
    public async Task WriteAsync(ReadOnlyMemory<byte> data)
    {
        try
        {
            await _output.WriteAsync(data).AsTask().WaitAsync(Timeout);
        }
        catch (InvalidOperationException ex) when (_memory is not null)
        {
            // The server's reset completed the pipe this client writes to.
            throw new Microsoft.AspNetCore.Connections.ConnectionResetException("The server reset the connection.", ex);
        }
    }

    /// <summary>Sends <paramref name="data"/> (so a collection expression can be written in place: <c>[2, 0, 0, 0, .. "ok"u8]</c>).</summary>
    public Task WriteAsync(byte[] data) => WriteAsync(data.AsMemory());

    /// <summary>Sends <paramref name="text"/> as UTF-8.</summary>
    public Task WriteAsync(string text) => WriteAsync(Encoding.UTF8.GetBytes(text));

    /// <summary>Reads exactly <paramref name="count"/> bytes.</summary>
    /// <exception cref="EndOfStreamException">The server closed first.</exception>
    public async Task<byte[]> ReadExactlyAsync(int count)
    {
        while (true)
        {
            var result = await _input.ReadAsync().AsTask().WaitAsync(Timeout);
            if (result.Buffer.Length >= count)
            {
                var bytes = result.Buffer.Slice(0, count).ToArray();
                _input.AdvanceTo(result.Buffer.GetPosition(count));
                return bytes;
            }

            if (result.IsCompleted)
            {
                throw new EndOfStreamException($"The server closed after {result.Buffer.Length} of {count} bytes.");
            }

            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>Reads one line as UTF-8, without its <c>\n</c> (or <c>\r\n</c>); null when the server closed before one.</summary>
    public async Task<string?> ReadLineAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync().AsTask().WaitAsync(Timeout);
            if (result.Buffer.PositionOf((byte)'\n') is { } end)
            {
                var line = Encoding.UTF8.GetString(result.Buffer.Slice(0, end));
                _input.AdvanceTo(result.Buffer.GetPosition(1, end));
                return line.EndsWith('\r') ? line[..^1] : line;
            }

            if (result.IsCompleted)
            {
                _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                return null;
            }

            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>Reads everything until the server's FIN.</summary>
    /// <exception cref="Microsoft.AspNetCore.Connections.ConnectionResetException">The server reset the connection (in memory).</exception>
    /// <exception cref="IOException">The server reset the connection (socket).</exception>
    public async Task<byte[]> ReadToEndAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync().AsTask().WaitAsync(Timeout);
            if (result.IsCompleted)
            {
                var all = result.Buffer.ToArray();
                _input.AdvanceTo(result.Buffer.End);
                return all;
            }

            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>Half-close (a FIN): the grain gets <c>EofReceived</c>; the client can still read.</summary>
    public async Task WriteEofAsync()
    {
        await _output.FlushAsync();
        if (_memory is not null)
        {
            _memory.WriteEof();
        }
        else
        {
            _socket!.Shutdown(SocketShutdown.Send);
        }
    }

    /// <summary>Resets the connection (an RST): the grain gets <c>ConnectionLost</c> with a reset.</summary>
    public void Reset()
    {
        if (_memory is not null)
        {
            _memory.Reset();
        }
        else
        {
            _socket!.LingerState = new LingerOption(true, 0);
            _socket.Close();
        }
    }

    /// <summary>
    /// Waits until the connection has ended and its grain was told (<c>ConnectionLost</c> delivered), and returns why
    /// it ended as the gateway recorded it (<see cref="ConnectionCloseReason.PeerClosed"/>, <c>IdleTimeout</c>, ...).
    /// </summary>
    public async Task<ConnectionCloseReason> ClosedAsync()
    {
        var connection = await _accepted.WaitAsync(Timeout);
        return await connection.Ended.WaitAsync(Timeout);
    }

    /// <summary>Closes the client's side (both directions), as closing a socket does.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _host.Forget(this, LocalEndPoint);
        if (_memory is not null)
        {
            await _memory.DisposeAsync();
        }
        else
        {
            _socket!.Dispose();
        }
    }
}
