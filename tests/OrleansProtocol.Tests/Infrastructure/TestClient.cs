using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>A plain TCP client on a real loopback socket, with reads bounded by <see cref="TestTimeouts.Default"/>.</summary>
public sealed class TestClient : IAsyncDisposable
{
    private readonly Socket _socket;

    private TestClient(Socket socket) => _socket = socket;

    public Socket Socket => _socket;

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    public static async Task<TestClient> ConnectAsync(EndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(TestTimeouts.Default);
        return new TestClient(socket);
    }

    /// <summary>Connects to a Unix domain socket (an unnamed client, as asyncio's).</summary>
    public static async Task<TestClient> ConnectUnixAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(TestTimeouts.Default);
        return new TestClient(socket);
    }

    /// <summary>Connects from a chosen local address (127.0.0.x on loopback): a distinct client address per client.</summary>
    public static async Task<TestClient> ConnectFromAsync(EndPoint endPoint, IPAddress source)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Bind(new IPEndPoint(source, 0));
        await socket.ConnectAsync(endPoint).WaitAsync(TestTimeouts.Default);
        return new TestClient(socket);
    }

    /// <summary>
    /// Asserts the server drops a connection to <paramref name="endPoint"/> without answering (after
    /// <paramref name="send"/>, if given). A server that drops at accept may reset the socket before the handshake or
    /// the send completes; that counts as dropped too.
    /// </summary>
    public static async Task AssertDroppedAsync(EndPoint endPoint, ReadOnlyMemory<byte> send = default)
    {
        try
        {
            await using var client = await ConnectAsync(endPoint);
            if (!send.IsEmpty)
            {
                await client.SendAsync(send);
            }

            await client.AssertDroppedAsync();
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown)
        {
        }
    }

    /// <summary>Asserts the server closes this connection without sending anything more (a FIN or a reset).</summary>
    public async Task AssertDroppedAsync()
    {
        try
        {
            Assert.Empty(await ReadToEndAsync());
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }
    }

    public async Task SendAsync(ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var sent = await _socket.SendAsync(data, SocketFlags.None).AsTask().WaitAsync(TestTimeouts.Default);
            data = data[sent..];
        }
    }

    public Task SendAsync(string text) => SendAsync(Encoding.UTF8.GetBytes(text));

    public async Task<byte[]> ReadExactlyAsync(int count)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await ReceiveAsync(buffer.AsMemory(read));
            if (n == 0)
            {
                throw new EndOfStreamException($"EOF after {read} of {count} bytes.");
            }

            read += n;
        }

        return buffer;
    }

    public async Task<string> ReadLineAsync()
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            if (await ReceiveAsync(one) == 0)
            {
                throw new EndOfStreamException($"EOF after '{Encoding.UTF8.GetString(bytes.ToArray())}'.");
            }

            if (one[0] == (byte)'\n')
            {
                return Encoding.UTF8.GetString(bytes.ToArray());
            }

            bytes.Add(one[0]);
        }
    }

    /// <summary>Reads until the peer closes; a reset after some data is reported as <see cref="SocketException"/>.</summary>
    public async Task<byte[]> ReadToEndAsync()
    {
        using var result = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await ReceiveAsync(buffer);
            if (n == 0)
            {
                return result.ToArray();
            }

            result.Write(buffer, 0, n);
        }
    }

    public async Task<int> ReceiveAsync(Memory<byte> buffer) =>
        await _socket.ReceiveAsync(buffer, SocketFlags.None).AsTask().WaitAsync(TestTimeouts.Default);

    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    /// <summary>Closes with RST.</summary>
    public void Reset()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
