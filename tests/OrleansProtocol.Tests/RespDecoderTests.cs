using System.Buffers;
using System.Text;
using OrleansProtocol.Framing;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The RESP sample's frame decoder and command parser, on scripted byte streams.</summary>
[Trait("Category", "Fast")]
public sealed class RespDecoderTests
{
    private static readonly FrameFormat Format = new() { Kind = FramingKind.Custom, MaxFrameSize = RespLimits.MaxCommandLength };

    private static string[] Arguments(byte[] frame) => [.. RespCommand.Parse(frame).Select(Encoding.UTF8.GetString)];

    [Fact]
    public void Pipelined_arrays_and_inline_commands_split_at_every_point_give_the_same_commands()
    {
        var stream = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nv!\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n  GET   k \n*0\r\n\r\n"u8.ToArray();
        string[][] expected = [["SET", "k", "v\r\nv!"], ["PING"], ["ECHO", ""], ["GET", "k"], [], []];
        for (var cut = 0; cut <= stream.Length; cut++)
        {
            var (frames, last) = FuzzTests.ReadAll(new RespFrameDecoder(Format), Sequences.Of([stream[..cut], stream[cut..]]), Format.MaxFrameSize);
            Assert.Equal(FrameReadStatus.NeedMoreData, last);
            Assert.Equal(expected, frames.Select(Arguments));
        }

        Assert.Equal(expected, FuzzTests.ReadByteByByte(new RespFrameDecoder(Format), stream).Frames.Select(Arguments));
    }

    [Theory]
    [InlineData("*1\r\n$2147483647\r\n", FrameReadStatus.TooLarge, "Protocol error: invalid bulk length")]
    [InlineData("*1\r\n$-5\r\n", FrameReadStatus.Invalid, "Protocol error: invalid bulk length")]
    [InlineData("*1\r\n$abc\r\n", FrameReadStatus.Invalid, "Protocol error: invalid bulk length")]
    [InlineData("*x\r\n", FrameReadStatus.Invalid, "Protocol error: invalid multibulk length")]
    [InlineData("*99999999999\r\n", FrameReadStatus.Invalid, "Protocol error: invalid multibulk length")]
    [InlineData("*1\r\n:5\r\n", FrameReadStatus.Invalid, "Protocol error: expected '$', got ':'")]
    [InlineData("*1\r\n$1\r\nab\r\n", FrameReadStatus.Invalid, "Protocol error: expected CRLF after a bulk string")]
    [InlineData("*1\r\n$1111111111111111111111111", FrameReadStatus.Invalid, "Protocol error: invalid bulk length")]
    public void Protocol_errors_are_refused_from_the_headers_with_Redis_text(string input, FrameReadStatus status, string problem)
    {
        var decoder = new RespFrameDecoder(Format);
        Assert.Equal(status, decoder.TryRead(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(input)), out _, out _));
        Assert.Equal(problem, decoder.Problem);
    }

    [Fact]
    public void An_inline_line_over_64_KiB_without_a_newline_is_refused_and_one_just_inside_is_a_command()
    {
        var inside = Encoding.ASCII.GetBytes("ECHO " + new string('x', RespLimits.MaxInlineLength - 6) + "\n");
        Assert.Equal(FrameReadStatus.Frame, new RespFrameDecoder(Format).TryRead(new ReadOnlySequence<byte>(inside), out _, out _));

        var decoder = new RespFrameDecoder(Format);
        var over = Encoding.ASCII.GetBytes(new string('x', RespLimits.MaxInlineLength + 1));
        Assert.Equal(FrameReadStatus.Invalid, decoder.TryRead(new ReadOnlySequence<byte>(over), out _, out _));
        Assert.Equal("Protocol error: too big inline request", decoder.Problem);
    }

    [Fact]
    public void A_32_MiB_value_is_a_command_and_one_byte_more_is_refused_before_its_body_arrives()
    {
        var header = Encoding.ASCII.GetBytes($"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${RespLimits.MaxBulkLength}\r\n");
        var decoder = new RespFrameDecoder(Format);
        Assert.Equal(FrameReadStatus.NeedMoreData, decoder.TryRead(new ReadOnlySequence<byte>(header), out _, out _));
        var whole = header.Concat(new byte[RespLimits.MaxBulkLength]).Concat("\r\n"u8.ToArray()).ToArray();
        Assert.Equal(FrameReadStatus.Frame, decoder.TryRead(new ReadOnlySequence<byte>(whole), out var frame, out var consumed));
        Assert.Equal(whole.Length, consumed);
        Assert.Equal(RespLimits.MaxBulkLength, RespCommand.Parse(frame.ToArray())[2].Length);

        var over = Encoding.ASCII.GetBytes($"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${RespLimits.MaxBulkLength + 1}\r\n");
        Assert.Equal(FrameReadStatus.TooLarge, new RespFrameDecoder(Format).TryRead(new ReadOnlySequence<byte>(over), out _, out _));
    }

    [Theory]
    [InlineData(@"SET ""a b"" c", new[] { "SET", "a b", "c" })]
    [InlineData(@"ECHO ""x\x41\n\""y\\""", new[] { "ECHO", "xA\n\"y\\" })]
    [InlineData(@"ECHO 'it\'s'", new[] { "ECHO", "it's" })]
    [InlineData(@"ECHO 'a\nb'", new[] { "ECHO", @"a\nb" })]
    [InlineData(@"ECHO ab""c d""", new[] { "ECHO", "abc d" })]
    [InlineData(@"ECHO ""\q"" ""\x4"" """" ''", new[] { "ECHO", "q", "x4", "", "" })]
    [InlineData("ECHO \"a\tb\"\t\v'c'", new[] { "ECHO", "a\tb", "c" })]
    [InlineData("ECHO a\u000bb", new[] { "ECHO", "a\u000bb" })]
    [InlineData("ECHO ab\0 cd", new[] { "ECHO", "ab" })]
    public void Inline_arguments_are_split_and_unquoted_as_Redis_does(string line, string[] expected)
    {
        var bytes = Encoding.Latin1.GetBytes(line + "\r\n");
        var decoder = new RespFrameDecoder(Format);
        Assert.Equal(FrameReadStatus.Frame, decoder.TryRead(new ReadOnlySequence<byte>(bytes), out var frame, out var consumed));
        Assert.Equal(bytes.Length, consumed);
        Assert.Equal(expected, RespCommand.Parse(frame.ToArray()).Select(Encoding.Latin1.GetString));
    }

    [Theory]
    [InlineData(@"ECHO ""abc")]
    [InlineData(@"ECHO ""a""b")]
    [InlineData(@"ECHO 'abc")]
    [InlineData(@"ECHO 'a'b")]
    [InlineData(@"ECHO ""a\""")]
    public void Unbalanced_inline_quotes_are_a_protocol_error_with_Redis_text(string line)
    {
        var decoder = new RespFrameDecoder(Format);
        var stream = Sequences.Of([Encoding.ASCII.GetBytes("PING\r\n" + line[..3]), Encoding.ASCII.GetBytes(line[3..] + "\r\nPING\r\n")]);
        Assert.Equal(FrameReadStatus.Frame, decoder.TryRead(stream, out _, out var consumed));
        Assert.Equal(FrameReadStatus.Invalid, decoder.TryRead(stream.Slice(consumed), out _, out _));
        Assert.Equal("Protocol error: unbalanced quotes in request", decoder.Problem);
    }
}
