using System.Buffers;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// A listener's own frame decoder under the gateway's limits: a well-behaved one up to the maximum frame size, and the
/// two contract breaches the gateway guards against (no progress; buffering past the maximum).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class CustomFramingTests(GatewayClusterFixture fixture)
{
    private const int MaxFrame = 64 * 1024;

    /// <summary>Frames are "length as 5 ASCII digits, then the body"; TooLarge is decided from the header.</summary>
    private sealed class DigitsDecoder(FrameFormat format) : IFrameDecoder
    {
        public string? Problem { get; private set; }

        public FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed)
        {
            (frame, consumed) = (default, 0);
            if (buffer.Length < 5)
            {
                return FrameReadStatus.NeedMoreData;
            }

            var length = int.Parse(System.Text.Encoding.ASCII.GetString(buffer.Slice(0, 5).ToArray()));
            if (length > format.MaxFrameSize)
            {
                Problem = $"digits frame of {length} bytes";
                return FrameReadStatus.TooLarge;
            }

            if (buffer.Length < 5 + length)
            {
                return FrameReadStatus.NeedMoreData;
            }

            (frame, consumed) = (buffer.Slice(5, length), 5 + length);
            return FrameReadStatus.Frame;
        }
    }

    /// <summary>Never finds a frame: buffers for ever unless the gateway stops it.</summary>
    private sealed class StuckDecoder : IFrameDecoder
    {
        public string? Problem => null;

        public FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed)
        {
            (frame, consumed) = (default, 0);
            return FrameReadStatus.NeedMoreData;
        }
    }

    /// <summary>Claims a frame but consumes nothing: would spin for ever unless the gateway stops it.</summary>
    private sealed class NoProgressDecoder : IFrameDecoder
    {
        public string? Problem => null;

        public FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed)
        {
            (frame, consumed) = (buffer.Slice(0, 0), 0);
            return buffer.IsEmpty ? FrameReadStatus.NeedMoreData : FrameReadStatus.Frame;
        }
    }

    private Task<ProtocolServer> CreateAsync(Func<FrameFormat, IFrameDecoder> decoder) =>
        fixture.Gateway.CreateServerAsync<TestGrains.RawFrameEchoGrain>($"custom-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.Framing.Decoder = decoder;
            o.Framing.MaxFrameSize = MaxFrame;
        });

    [Fact]
    public async Task A_decoder_gets_whole_frames_up_to_the_maximum_and_one_over_it_is_refused_with_its_problem()
    {
        await using var server = await CreateAsync(format => new DigitsDecoder(format));
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // Two small frames in one write, then one of exactly the maximum, trickled in pieces.
        await client.SendAsync("00002hi00003you");
        Assert.Equal("hiyou"u8.ToArray(), await client.ReadExactlyAsync(5));
        Assert.Equal(2, record.Count("FR"));
        var body = new byte[MaxFrame];
        new Random(5).NextBytes(body);
        var largest = System.Text.Encoding.ASCII.GetBytes($"{MaxFrame:D5}").Concat(body).ToArray();
        foreach (var piece in largest.Chunk(10_000))
        {
            await client.SendAsync(piece);
        }

        var echoed = await client.ReadExactlyAsync(MaxFrame);
        Assert.True(body.AsSpan().SequenceEqual(echoed));

        // One byte over: refused from its header, with the decoder's own words.
        await client.SendAsync($"{MaxFrame + 1:D5}");
        await client.AssertDroppedAsync();
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.FrameTooLarge, record.LostReason);
        Assert.Contains(fixture.Logs.Entries, e => e.Message.Contains($"digits frame of {MaxFrame + 1} bytes", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_decoder_that_buffers_past_the_maximum_is_stopped_and_one_that_consumes_nothing_is_a_protocol_error()
    {
        await using (var server = await CreateAsync(_ => new StuckDecoder()))
        await using (var client = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

            // Up to the maximum it may wait (a large frame on its way); past it the gateway stops it.
            await client.SendAsync(new byte[MaxFrame]);
            await client.SendAsync(new byte[MaxFrame]);
            await client.AssertDroppedAsync();
            await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
            Assert.Equal(ConnectionCloseReason.FrameTooLarge, record.LostReason);
        }

        await using (var server = await CreateAsync(_ => new NoProgressDecoder()))
        await using (var client = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
            await client.SendAsync("anything");
            await client.AssertDroppedAsync();
            await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
            Assert.Equal(ConnectionCloseReason.ProtocolError, record.LostReason);
            Assert.DoesNotContain("FR", record.Events);
        }
    }
}
