using System.Buffers;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansProtocol.Tests;

/// <summary>
/// Random and mutated inputs for everything that parses bytes from the network before a grain sees them: the framers
/// and the PROXY protocol parser. Each gets <see cref="Inputs"/> inputs (1,000,000 unless
/// <c>ORLEANSPROTOCOL_FUZZ_INPUTS</c> says otherwise); the only outcomes allowed are the documented ones, and every
/// parse makes progress or stops.
/// </summary>
[Trait("Category", "Fast")]
public sealed class FuzzTests(ITestOutputHelper output)
{
    private static readonly int Inputs =
        int.TryParse(Environment.GetEnvironmentVariable("ORLEANSPROTOCOL_FUZZ_INPUTS"), out var n) && n > 0 ? n : 1_000_000;

    private const int MaxFrameSize = 300;

    private static readonly FrameFormat[] Formats =
    [
        .. from width in new[] { 1, 2, 4, 8 }
           from bigEndian in new[] { true, false }
           from adjustment in new[] { 0, -width }
           select new FrameFormat
           {
               Kind = FramingKind.LengthPrefixed, PrefixLength = width, BigEndian = bigEndian,
               LengthAdjustment = adjustment, MaxFrameSize = MaxFrameSize,
           },
        new FrameFormat { Kind = FramingKind.Line, MaxFrameSize = MaxFrameSize },
        new FrameFormat { Kind = FramingKind.Delimited, Delimiter = "\r\n\r\n"u8.ToArray(), MaxFrameSize = MaxFrameSize },
        new FrameFormat { Kind = FramingKind.Delimited, Delimiter = "|"u8.ToArray(), MaxFrameSize = MaxFrameSize },
    ];

    [Fact]
    public void The_framers_take_random_and_mutated_streams_with_only_documented_outcomes_and_always_progress()
    {
        var random = new Random(11);
        var outcomes = new Dictionary<FrameReadStatus, int>();
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < Inputs; i++)
        {
            var format = Formats[i % Formats.Length];
            var input = i % 2 == 0 ? RandomBytes(random, 96) : Mutate(random, EncodedFrames(random, format));
            var (frames, status) = ReadAll(format, Sequences.SplitAtRandom(random, input));
            outcomes[status] = outcomes.GetValueOrDefault(status) + 1;
            Assert.True(status != FrameReadStatus.Invalid || format.LengthAdjustment < 0, "only a negative adjustment makes a header invalid");

            // Incremental reads (one decoder fed byte by byte, as a trickling peer) find exactly the same frames.
            if (i % 64 == 1)
            {
                Assert.Equal(frames, ReadByteByByte(format, input).Frames);
            }
        }

        output.WriteLine($"{Inputs} inputs in {started.Elapsed.TotalSeconds:0.0} s: {string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}"))}");
        Assert.True(outcomes.GetValueOrDefault(FrameReadStatus.TooLarge) > 0 && outcomes.GetValueOrDefault(FrameReadStatus.NeedMoreData) > 0);
    }

    [Fact]
    public void The_PROXY_parser_takes_random_and_mutated_headers_with_only_documented_outcomes()
    {
        var random = new Random(7);
        byte[][] seeds =
        [
            "PROXY TCP4 203.0.113.7 10.0.0.1 51234 7000\r\n"u8.ToArray(),
            "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"u8.ToArray(),
            "PROXY UNKNOWN\r\n"u8.ToArray(),
            ProxyProtocolTests.V2Tcp4("198.51.100.9", 40000, "10.0.0.2", 7001),
        ];
        var outcomes = new Dictionary<ProxyParseStatus, int>();
        for (var i = 0; i < Inputs; i++)
        {
            var input = i % 2 == 0 ? RandomBytes(random, 64) : Mutate(random, seeds[random.Next(seeds.Length)]);
            var status = ProxyProtocolParser.TryParse(Sequences.SplitAtRandom(random, input), out var header, out var consumed);
            outcomes[status] = outcomes.GetValueOrDefault(status) + 1;

            // A header is consumed only when one was found, never past the input; its addresses are whole.
            if (status == ProxyParseStatus.Done)
            {
                Assert.InRange(consumed, 1, input.Length);
                Assert.True(header.Source is null || header.Source.Port is >= 0 and <= 65535);
            }
            else
            {
                Assert.Equal(0, consumed);
            }
        }

        output.WriteLine($"{Inputs} inputs: {string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}"))}");
        Assert.Equal(3, outcomes.Count);
    }

    private static (List<byte[]> Frames, FrameReadStatus Last) ReadAll(FrameFormat format, ReadOnlySequence<byte> buffer) =>
        ReadAll(new FrameDecoder(format), buffer, MaxFrameSize);

    /// <summary>Reads frames until the decoder stops, asserting it makes progress and keeps frames within <paramref name="maxFrame"/>.</summary>
    internal static (List<byte[]> Frames, FrameReadStatus Last) ReadAll(IFrameDecoder decoder, ReadOnlySequence<byte> buffer, long maxFrame)
    {
        var frames = new List<byte[]>();
        while (true)
        {
            var status = decoder.TryRead(buffer, out var frame, out var consumed);
            if (status != FrameReadStatus.Frame)
            {
                return (frames, status);
            }

            // Progress, never past the input, and never a frame over the limit.
            Assert.InRange(consumed, 1, buffer.Length);
            Assert.InRange(frame.Length, 0, maxFrame);
            frames.Add(frame.ToArray());
            buffer = buffer.Slice(consumed);
        }
    }

    private static (List<byte[]> Frames, FrameReadStatus Last) ReadByteByByte(FrameFormat format, byte[] input) =>
        ReadByteByByte(new FrameDecoder(format), input);

    /// <summary>Feeds one decoder the input a byte more at a time, as a trickling peer.</summary>
    internal static (List<byte[]> Frames, FrameReadStatus Last) ReadByteByByte(IFrameDecoder decoder, byte[] input)
    {
        var frames = new List<byte[]>();
        var start = 0;
        var status = FrameReadStatus.NeedMoreData;
        for (var end = 1; end <= input.Length && status is FrameReadStatus.NeedMoreData or FrameReadStatus.Frame; end++)
        {
            while ((status = decoder.TryRead(new ReadOnlySequence<byte>(input, start, end - start), out var frame, out var consumed)) == FrameReadStatus.Frame)
            {
                frames.Add(frame.ToArray());
                start += (int)consumed;
            }
        }

        return (frames, status);
    }

    [Fact]
    public void The_RESP_decoder_takes_random_and_mutated_streams_with_only_documented_outcomes_and_always_progress()
    {
        var random = new Random(13);
        var format = new FrameFormat { Kind = FramingKind.Custom, MaxFrameSize = MaxFrameSize };
        var outcomes = new Dictionary<FrameReadStatus, int>();
        for (var i = 0; i < Inputs / 4; i++)
        {
            var input = i % 2 == 0 ? RandomBytes(random, 96) : Mutate(random, RespCommands(random));
            var decoder = new RespFrameDecoder(format);
            var (frames, status) = ReadAll(decoder, Sequences.SplitAtRandom(random, input), MaxFrameSize);
            outcomes[status] = outcomes.GetValueOrDefault(status) + 1;
            if (status is FrameReadStatus.TooLarge or FrameReadStatus.Invalid)
            {
                Assert.StartsWith("Protocol error: ", decoder.Problem);
            }

            // Every frame parses back to arguments; incremental reads find exactly the same frames.
            Assert.All(frames, f => RespCommand.Parse(f));
            if (i % 64 == 1)
            {
                Assert.Equal(frames, ReadByteByByte(new RespFrameDecoder(format), input).Frames);
            }
        }

        output.WriteLine($"{Inputs / 4} inputs: {string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}"))}");
        Assert.Equal(3, outcomes.Count);
    }

    /// <summary>A few commands, arrays of bulk strings or inline lines.</summary>
    private static byte[] RespCommands(Random random)
    {
        var writer = new ArrayBufferWriter<byte>();
        for (var commands = random.Next(1, 4); commands > 0; commands--)
        {
            if (random.Next(4) == 0)
            {
                writer.Write("PING hello\r\n"u8);
                continue;
            }

            var count = random.Next(0, 4);
            RespReply.ArrayHeader(writer, count);
            for (var a = 0; a < count; a++)
            {
                RespReply.Bulk(writer, RandomBytes(random, 60));
            }
        }

        return writer.WrittenSpan.ToArray();
    }

    private static byte[] RandomBytes(Random random, int maxLength)
    {
        var bytes = new byte[random.Next(0, maxLength)];
        random.NextBytes(bytes);
        return bytes;
    }

    private static byte[] EncodedFrames(Random random, FrameFormat format)
    {
        var writer = new ArrayBufferWriter<byte>();
        for (var frames = random.Next(1, 5); frames > 0; frames--)
        {
            var payload = RandomBytes(random, MaxFrameSize + 20);
            if (format.Kind != FramingKind.LengthPrefixed)
            {
                // The codec refuses payloads holding the delimiter: replace its bytes.
                var delimiter = format.Kind == FramingKind.Line ? (byte)'\n' : format.Delimiter![0];
                payload.AsSpan().Replace(delimiter, (byte)'x');
            }

            if (format.Kind == FramingKind.LengthPrefixed && format.PrefixLength == 1)
            {
                payload = payload[..Math.Min(payload.Length, 255 + format.LengthAdjustment)];
            }

            FrameCodec.Encode(format, payload, bytes => writer.Write(bytes));
        }

        return writer.WrittenSpan.ToArray();
    }

    /// <summary>Flips, inserts or deletes a few bytes, then maybe truncates.</summary>
    private static byte[] Mutate(Random random, byte[] seed)
    {
        var bytes = new List<byte>(seed);
        for (var edits = random.Next(1, 4); edits > 0; edits--)
        {
            var at = random.Next(bytes.Count + 1);
            switch (random.Next(3))
            {
                case 0 when at < bytes.Count:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 1:
                    bytes.Insert(at, (byte)random.Next(256));
                    break;
                case 2 when at < bytes.Count:
                    bytes.RemoveAt(at);
                    break;
            }
        }

        return [.. bytes.Take(random.Next(4) == 0 ? random.Next(bytes.Count + 1) : bytes.Count)];
    }
}
