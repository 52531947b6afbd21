using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Write back-pressure instead of resets: the gateway holds input while writing is paused, so peers that read — slowly,
/// or taking large replies — are never aborted, and what is buffered for each stays bounded.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class BackPressureTests(GatewayClusterFixture fixture)
{
    // Echo answers each DataReceived (at most MaxDataReceivedSize, 64 KiB) in its callback, and input waits while the
    // buffer is over the high-water mark: so the buffer never passes high + one chunk.
    private const long EchoBufferBound = ProtocolTransport.DefaultWriteBufferHigh + (64 * 1024);

    private GatewayConnection GatewaySide(string listener, TestClient client) =>
        fixture.Gateway.GetServer(listener).Connections.Single(c => Equals(c.Info.RemoteEndPoint, client.LocalEndPoint));

    /// <summary>Sends <paramref name="data"/> while reading the echo, <paramref name="readPause"/> between reads of <paramref name="readSize"/>.</summary>
    private static async Task<byte[]> EchoAsync(TestClient client, byte[] data, int readSize, TimeSpan readPause)
    {
        var sending = Task.Run(() => client.SendAsync(data));
        var echoed = new byte[data.Length];
        var read = 0;
        while (read < data.Length)
        {
            var n = await client.ReceiveAsync(echoed.AsMemory(read, Math.Min(readSize, data.Length - read)));
            Assert.True(n > 0, $"EOF after {read} of {data.Length} bytes");
            read += n;
            if (readPause > TimeSpan.Zero)
            {
                // The client's own pace (a slow reader is the case under test), not a synchronisation.
                await Task.Delay(readPause);
            }
        }

        await sending;
        return echoed;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public async Task A_client_reading_64_KiB_every_50_ms_while_sending_8_MiB_gets_every_byte_back()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("echo"));
        var data = RandomBytes(8 * 1024 * 1024, 1);
        var echoed = await EchoAsync(client, data, 64 * 1024, TimeSpan.FromMilliseconds(50));
        Assert.True(data.AsSpan().SequenceEqual(echoed));

        var gateway = GatewaySide("echo", client);
        Assert.True(gateway.PeakWriteBufferSize <= EchoBufferBound, $"buffered {gateway.PeakWriteBufferSize} bytes");
        Assert.Equal(ConnectionCloseReason.None, gateway.CloseReason);
    }

    [Fact]
    public async Task With_ReadWhileWritingPaused_Echo_bounds_its_own_output_by_pausing_reading_as_asyncio_teaches()
    {
        // The gateway does not hold input for this listener: Echo's PauseWriting -> PauseReading pattern does the work.
        await using var server = await fixture.Gateway.CreateServerAsync<Samples.EchoGrain>($"reads-while-paused-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.ReadWhileWritingPaused = true;
        });
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var data = RandomBytes(4 * 1024 * 1024, 3);
        var echoed = await EchoAsync(client, data, 64 * 1024, TimeSpan.FromMilliseconds(20));
        Assert.True(data.AsSpan().SequenceEqual(echoed));
        var gateway = GatewaySide(server.Name, client);
        Assert.True(gateway.PeakWriteBufferSize <= EchoBufferBound, $"buffered {gateway.PeakWriteBufferSize} bytes");
        Assert.Equal(ConnectionCloseReason.None, gateway.CloseReason);
    }

    [Fact]
    public async Task Streams_of_16_MiB_sent_while_reading_come_back_whole_seven_times_in_a_row()
    {
        for (var run = 0; run < 7; run++)
        {
            await using var client = await TestClient.ConnectAsync(fixture.EndPoint("echo"));
            var data = RandomBytes(16 * 1024 * 1024, run);
            var echoed = await EchoAsync(client, data, 256 * 1024, TimeSpan.Zero);
            Assert.True(data.AsSpan().SequenceEqual(echoed), $"run {run}");
            Assert.True(GatewaySide("echo", client).PeakWriteBufferSize <= EchoBufferBound);
        }
    }

    [Fact]
    public async Task Fifty_peers_streaming_1_MiB_each_at_once_get_every_byte_back_with_bounded_buffers()
    {
        var clients = new List<TestClient>();
        for (var i = 0; i < 50; i++)
        {
            clients.Add(await TestClient.ConnectAsync(fixture.EndPoint("echo")));
        }

        try
        {
            await Task.WhenAll(clients.Select((client, i) => Task.Run(async () =>
            {
                var data = RandomBytes(1024 * 1024, 100 + i);
                var echoed = await EchoAsync(client, data, 32 * 1024, TimeSpan.Zero);
                Assert.True(data.AsSpan().SequenceEqual(echoed), $"client {i}");
            })));

            foreach (var client in clients)
            {
                var gateway = GatewaySide("echo", client);
                Assert.True(gateway.PeakWriteBufferSize <= EchoBufferBound, $"buffered {gateway.PeakWriteBufferSize} bytes");
                Assert.Equal(ConnectionCloseReason.None, gateway.CloseReason);
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Replies_larger_than_a_MiB_in_one_callback_arrive_whole_alone_and_pipelined()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;

        // One reply of 2 MB, as a Redis GET of a large value.
        await client.SendAsync("blast 2000000\n");
        Assert.Equal(2_000_000, (await client.ReadExactlyAsync(2_000_000)).Length);

        // Sixteen pipelined replies of 100 KB, read slowly.
        await client.SendAsync(string.Concat(Enumerable.Repeat("blast 100000\n", 16)) + "echo done\n");
        var read = 0;
        var buffer = new byte[64 * 1024];
        while (read < 1_600_000)
        {
            read += await client.ReceiveAsync(buffer.AsMemory(0, Math.Min(buffer.Length, 1_600_000 - read)));

            // The client's own pace (a slow reader is the case under test), not a synchronisation.
            await Task.Delay(5);
        }

        Assert.Equal("done", await client.ReadLineAsync());
        Assert.Equal(ConnectionCloseReason.None, record.LostReason);
    }

    [Fact]
    public async Task Sends_from_another_grain_complete_only_when_the_buffer_is_back_under_the_mark()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;
        var connection = fixture.Grains.GetConnection(record.Connection);

        // The peer reads nothing: the first sends fill the kernel's buffers, then the gateway's past the high-water
        // mark, and a send waits there instead of piling bytes up.
        var chunk = new byte[256 * 1024];
        Task send;
        var sent = 0;
        do
        {
            send = connection.Send(chunk);
            var done = await Task.WhenAny(send, Task.Delay(TestTimeouts.QuietPeriod)) == send;
            if (!done)
            {
                break;
            }

            sent++;
            Assert.True(sent < 400, "100 MiB went out to a peer that reads nothing");
        }
        while (true);

        var gateway = GatewaySide("script", client);
        Assert.True(gateway.WriteBufferSize > ProtocolTransport.DefaultWriteBufferHigh);
        Assert.True(gateway.PeakWriteBufferSize <= ProtocolTransport.DefaultWriteBufferHigh + chunk.Length, $"buffered {gateway.PeakWriteBufferSize} bytes");

        // The peer reads: the waiting send completes, and every byte arrives.
        var total = (sent + 1L) * chunk.Length;
        var received = 0L;
        var buffer = new byte[256 * 1024];
        while (received < total)
        {
            received += await client.ReceiveAsync(buffer);
        }

        await send.WaitAsync(TestTimeouts.Default);
        Assert.Equal(total, received);
    }
}
