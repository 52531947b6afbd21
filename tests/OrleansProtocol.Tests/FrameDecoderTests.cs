using System.Buffers;
using OrleansProtocol.Framing;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The gateway's frame decoder on its own: every split of the stream gives the same frames.</summary>
[Trait("Category", "Fast")]
public sealed class FrameDecoderTests
{
    private static readonly FrameFormat Le4 = new() { Kind = FramingKind.LengthPrefixed, PrefixLength = 4, BigEndian = false, MaxFrameSize = 1000 };

    /// <summary>Encodes frames with the grain's encoder.</summary>
    private static byte[] Encode(FrameFormat format, IEnumerable<byte[]> frames)
    {
        var output = new ArrayBufferWriter<byte>();
        foreach (var frame in frames)
        {
            FrameCodec.Encode(format, frame, bytes => output.Write(bytes));
        }

        return output.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Feeds <paramref name="stream"/> to a decoder in the given pieces, as the pump does with a pipe: the unconsumed
    /// rest stays in front of what arrives next. Returns the frames and how it stopped.
    /// </summary>
    private static (List<byte[]> Frames, FrameReadStatus Last) Decode(FrameFormat format, byte[] stream, IEnumerable<int> pieceSizes)
    {
        var decoder = new FrameDecoder(format);
        var frames = new List<byte[]>();
        var pending = new List<byte[]>();
        var offset = 0;
        var last = FrameReadStatus.NeedMoreData;
        foreach (var size in pieceSizes.Append(int.MaxValue))
        {
            var take = Math.Min(size, stream.Length - offset);
            if (take > 0)
            {
                pending.Add(stream[offset..(offset + take)]);
                offset += take;
            }

            while (true)
            {
                var buffer = Sequences.Of(pending);
                last = decoder.TryRead(buffer, out var frame, out var consumed);
                if (last != FrameReadStatus.Frame)
                {
                    break;
                }

                frames.Add(frame.ToArray());
                var rest = buffer.Slice(consumed).ToArray();
                pending = rest.Length == 0 ? [] : [rest];
            }

            if (last is FrameReadStatus.TooLarge or FrameReadStatus.Invalid || offset == stream.Length)
            {
                break;
            }
        }

        return (frames, last);
    }

    private static byte[][] SomeFrames() => [[1, 2, 3], [], new byte[1000], "hello"u8.ToArray(), [0]];

    [Theory]
    [InlineData(1, true)]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(2, false)]
    [InlineData(4, true)]
    [InlineData(4, false)]
    [InlineData(8, true)]
    [InlineData(8, false)]
    public void Every_prefix_width_and_byte_order_round_trips_byte_by_byte_and_all_at_once(int width, bool bigEndian)
    {
        var format = new FrameFormat { Kind = FramingKind.LengthPrefixed, PrefixLength = width, BigEndian = bigEndian, MaxFrameSize = 255 };
        byte[][] frames = [[1, 2, 3], [], new byte[255], [7]];
        var stream = Encode(format, frames);
        Assert.Equal(frames, Decode(format, stream, Enumerable.Repeat(1, stream.Length)).Frames);
        Assert.Equal(frames, Decode(format, stream, [stream.Length]).Frames);
    }

    [Fact]
    public void The_prefix_is_written_in_the_order_asked_for()
    {
        Assert.Equal(new byte[] { 3, 0, 0, 0, 1, 2, 3 }, Encode(Le4, [[1, 2, 3]]));
        Assert.Equal(new byte[] { 0, 3, 1, 2, 3 }, Encode(Le4 with { PrefixLength = 2, BigEndian = true }, [[1, 2, 3]]));
    }

    [Fact]
    public void A_frame_exactly_at_the_limit_is_accepted_and_one_byte_over_is_refused_on_the_prefix_alone()
    {
        Assert.Equal(1000, Assert.Single(Decode(Le4, Encode(Le4, [new byte[1000]]), [1004]).Frames).Length);

        // Only the 4 prefix bytes of a 1001-byte frame: refused before any of the body exists.
        var (frames, last) = Decode(Le4, [0xE9, 0x03, 0, 0], [4]);
        Assert.Empty(frames);
        Assert.Equal(FrameReadStatus.TooLarge, last);
    }

    [Fact]
    public void A_2_GiB_prefix_is_refused_without_a_body()
    {
        var decoder = new FrameDecoder(Le4);
        Assert.Equal(FrameReadStatus.TooLarge, decoder.TryRead(new ReadOnlySequence<byte>([0, 0, 0, 0x80]), out _, out _));
        Assert.Equal(2147483648, decoder.AnnouncedLength);
    }

    [Fact]
    public void A_length_adjustment_lets_the_length_count_its_own_prefix()
    {
        var format = Le4 with { LengthAdjustment = -4 };
        var stream = Encode(format, [[9, 9]]);
        Assert.Equal(new byte[] { 6, 0, 0, 0, 9, 9 }, stream);
        Assert.Equal([9, 9], Assert.Single(Decode(format, stream, [1, 1, 1, 1, 1, 1]).Frames));
        Assert.Equal(FrameReadStatus.Invalid, Decode(format, [2, 0, 0, 0], [4]).Last);
    }

    [Fact]
    public void Lines_end_at_LF_drop_a_CR_before_it_and_are_limited_even_without_a_newline()
    {
        var format = new FrameFormat { Kind = FramingKind.Line, MaxFrameSize = 10 };
        var (frames, _) = Decode(format, "one\r\ntwo\n\nthree\r\n"u8.ToArray(), [2, 5, 1, 1, 100]);
        Assert.Equal(["one", "two", "", "three"], frames.Select(f => System.Text.Encoding.ASCII.GetString(f)));

        Assert.Equal(FrameReadStatus.TooLarge, Decode(format, "0123456789A"u8.ToArray(), Enumerable.Repeat(1, 11)).Last);
        Assert.Equal("0123456789", System.Text.Encoding.ASCII.GetString(Assert.Single(Decode(format, "0123456789\n"u8.ToArray(), [11]).Frames)));
    }

    [Fact]
    public void A_multi_byte_delimiter_is_found_across_segment_boundaries()
    {
        var format = new FrameFormat { Kind = FramingKind.Delimited, Delimiter = "\r\n\r\n"u8.ToArray(), MaxFrameSize = 100 };
        var stream = Encode(format, ["GET / HTTP/1.0"u8.ToArray(), []]);
        for (var split = 1; split < stream.Length; split++)
        {
            var (frames, _) = Decode(format, stream, [split, 1, 1, 1, 1000]);
            Assert.Equal(2, frames.Count);
            Assert.Equal("GET / HTTP/1.0", System.Text.Encoding.ASCII.GetString(frames[0]));
        }
    }

    [Fact]
    public void The_encoder_refuses_frames_the_peer_could_not_decode()
    {
        Assert.Throws<ArgumentException>(() => Encode(new FrameFormat { Kind = FramingKind.Line }, ["a\nb"u8.ToArray()]));
        Assert.Throws<ArgumentException>(() => Encode(Le4 with { PrefixLength = 1 }, [new byte[256]]));
        Assert.Throws<InvalidOperationException>(() => Encode(FrameFormat.Raw, [[1]]));
    }

    [Theory]
    [InlineData(FramingKind.LengthPrefixed)]
    [InlineData(FramingKind.Line)]
    [InlineData(FramingKind.Delimited)]
    public void Random_frames_at_random_split_points_round_trip_exactly(FramingKind kind)
    {
        var format = new FrameFormat { Kind = kind, PrefixLength = 2, BigEndian = true, Delimiter = [0xFF, 0xFE], MaxFrameSize = 300 };
        var random = new Random(42 + (int)kind);
        for (var trial = 0; trial < 300; trial++)
        {
            var frames = Enumerable.Range(0, random.Next(0, 20)).Select(_ =>
            {
                var frame = new byte[random.Next(0, 301)];
                random.NextBytes(frame);

                // Keep frames decodable: no delimiter inside, and no CR that a line frame would eat at its end.
                for (var i = 0; i < frame.Length; i++)
                {
                    frame[i] = frame[i] is (byte)'\n' or (byte)'\r' or 0xFF ? (byte)'x' : frame[i];
                }

                return frame;
            }).ToArray();
            var stream = Encode(format, frames);
            var splits = new List<int>();
            for (var rest = stream.Length; rest > 0;)
            {
                var piece = random.Next(1, Math.Min(rest, 64) + 1);
                splits.Add(piece);
                rest -= piece;
            }

            var (decoded, last) = Decode(format, stream, splits);
            Assert.Equal(FrameReadStatus.NeedMoreData, last);
            Assert.Equal(frames, decoded);
        }
    }
}
