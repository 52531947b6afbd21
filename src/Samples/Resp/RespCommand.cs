using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace OrleansProtocol.Samples.Resp;

/// <summary>One command's arguments, parsed from a frame <see cref="RespFrameDecoder"/> already validated.</summary>
public static class RespCommand
{
    /// <summary>
    /// The arguments of one command: the bulk strings of an array, or the words of an inline line (split and unquoted
    /// as Redis does, see <see cref="TrySplitInline"/>). Empty for an empty line or <c>*0</c>.
    /// </summary>
    public static byte[][] Parse(ReadOnlyMemory<byte> frame)
    {
        var span = frame.Span;
        if (span.IsEmpty)
        {
            return [];
        }

        if (span[0] != (byte)'*')
        {
            return Inline(span);
        }

        var position = 1;
        var count = ReadInteger(span, ref position);
        var arguments = new byte[Math.Max(0, count)][];
        for (var i = 0; i < arguments.Length; i++)
        {
            position++; // '$'
            var length = ReadInteger(span, ref position);
            arguments[i] = span.Slice(position, length).ToArray();
            position += length + 2;
        }

        return arguments;
    }

    private static int ReadInteger(ReadOnlySpan<byte> span, ref int position)
    {
        var end = span[position..].IndexOf((byte)'\r');
        Utf8Parser.TryParse(span.Slice(position, end), out int value, out _);
        position += end + 2;
        return value;
    }

    private static byte[][] Inline(ReadOnlySpan<byte> line)
    {
        var words = new List<byte[]>();
        return TrySplitInline(line, words) ? [.. words] : [];
    }

    /// <summary>
    /// Splits an inline command line into its arguments as Redis does (<c>sdssplitargs</c>): words between blanks; in
    /// double quotes the escapes <c>\n \r \t \b \a \xHH</c> and <c>\</c> before any other byte; in single quotes only
    /// <c>\'</c>; a quote may open inside a word, and a closing quote must be followed by a blank or the end of the line.
    /// A NUL byte ends the line, as in Redis' C string.
    /// </summary>
    /// <param name="line">The line without its line end.</param>
    /// <param name="arguments">Receives the arguments; null only to check the quotes.</param>
    /// <returns>False when the quotes are unbalanced (Redis: "Protocol error: unbalanced quotes in request").</returns>
    public static bool TrySplitInline(ReadOnlySpan<byte> line, List<byte[]>? arguments)
    {
        if (line.IndexOf((byte)0) is >= 0 and var nul)
        {
            line = line[..nul];
        }

        var current = arguments is null ? null : new List<byte>();
        var p = 0;
        while (true)
        {
            while (p < line.Length && IsSpace(line[p]))
            {
                p++;
            }

            if (p == line.Length)
            {
                return true;
            }

            byte quote = 0;
            current?.Clear();
            while (true)
            {
                var c = p < line.Length ? line[p] : (byte)0;
                var next = p + 1 < line.Length ? line[p + 1] : (byte)0;
                if (quote != 0)
                {
                    if (c == 0)
                    {
                        return false;
                    }

                    if (c == quote)
                    {
                        if (next != 0 && !IsSpace(next))
                        {
                            return false;
                        }

                        p++;
                        break;
                    }

                    if (quote == '"' && c == '\\' && next == 'x' && p + 3 < line.Length && IsHex(line[p + 2]) && IsHex(line[p + 3]))
                    {
                        current?.Add((byte)((Hex(line[p + 2]) << 4) | Hex(line[p + 3])));
                        p += 3;
                    }
                    else if (quote == '"' && c == '\\' && next != 0)
                    {
                        p++;
                        current?.Add(next switch { (byte)'n' => (byte)'\n', (byte)'r' => (byte)'\r', (byte)'t' => (byte)'\t', (byte)'b' => (byte)'\b', (byte)'a' => (byte)'\a', _ => next });
                    }
                    else if (quote == '\'' && c == '\\' && next == '\'')
                    {
                        p++;
                        current?.Add(next);
                    }
                    else
                    {
                        current?.Add(c);
                    }
                }
                else if (c is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t' or 0)
                {
                    break;
                }
                else if (c is (byte)'"' or (byte)'\'')
                {
                    quote = c;
                }
                else
                {
                    current?.Add(c);
                }

                p++;
            }

            arguments?.Add([.. current!]);
        }
    }

    // C's isspace: what Redis skips between arguments.
    private static bool IsSpace(byte c) => c is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\v' or (byte)'\f' or (byte)'\r';

    private static bool IsHex(byte c) => char.IsAsciiHexDigit((char)c);

    private static int Hex(byte c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;

    /// <summary>The command's name in upper case (ASCII), for dispatch.</summary>
    public static string Name(byte[] argument) => Encoding.ASCII.GetString(argument).ToUpperInvariant();

    /// <summary>A key or channel as a string of the same bytes (Latin-1 maps each byte to one char, so any bytes round-trip).</summary>
    public static string Key(byte[] argument) => Encoding.Latin1.GetString(argument);

    /// <summary>The bytes of a key or channel made by <see cref="Key"/>.</summary>
    public static byte[] KeyBytes(string key) => Encoding.Latin1.GetBytes(key);

    /// <summary>Parses a 64-bit integer argument as Redis does (no spaces, no leading plus, no trailing text).</summary>
    public static bool TryInteger(byte[] argument, out long value) =>
        Utf8Parser.TryParse(argument, out value, out var used) && used == argument.Length && argument.Length > 0 && argument[0] != (byte)'+';
}

/// <summary>Encodes RESP2 replies into a buffer: the replies of one burst of commands go out in one write.</summary>
public static class RespReply
{
    /// <summary><c>+OK</c>.</summary>
    public static ReadOnlySpan<byte> Ok => "+OK\r\n"u8;

    /// <summary>The null bulk string, <c>$-1</c>.</summary>
    public static ReadOnlySpan<byte> Nil => "$-1\r\n"u8;

    /// <summary>Redis' reply to an integer argument that is not one.</summary>
    public const string NotAnInteger = "ERR value is not an integer or out of range";

    /// <summary>A simple string (<c>+text</c>); <paramref name="text"/> must not contain CR or LF.</summary>
    public static void Simple(IBufferWriter<byte> output, string text) => Line(output, '+', text);

    /// <summary>An error (<c>-ERR text</c>); CR and LF in <paramref name="text"/> become spaces, as Redis does.</summary>
    public static void Error(IBufferWriter<byte> output, string text) => Line(output, '-', text.Replace('\r', ' ').Replace('\n', ' '));

    /// <summary>An integer (<c>:n</c>).</summary>
    public static void Integer(IBufferWriter<byte> output, long value) => Header(output, ':', value);

    /// <summary>A bulk string, or the null bulk string when <paramref name="value"/> is null.</summary>
    public static void Bulk(IBufferWriter<byte> output, ReadOnlySpan<byte> value) => Bulk(output, value, isNull: false);

    /// <summary>A bulk string, or the null bulk string when <paramref name="value"/> is null.</summary>
    public static void Bulk(IBufferWriter<byte> output, byte[]? value) => Bulk(output, value, value is null);

    /// <summary>An array header (<c>*n</c>); its elements follow.</summary>
    public static void ArrayHeader(IBufferWriter<byte> output, int count) => Header(output, '*', count);

    /// <summary>Writes raw bytes (an already encoded reply).</summary>
    public static void Raw(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes) => output.Write(bytes);

    private static void Bulk(IBufferWriter<byte> output, ReadOnlySpan<byte> value, bool isNull)
    {
        if (isNull)
        {
            output.Write(Nil);
            return;
        }

        Header(output, '$', value.Length);
        output.Write(value);
        output.Write("\r\n"u8);
    }

    private static void Header(IBufferWriter<byte> output, char marker, long value)
    {
        var span = output.GetSpan(24);
        span[0] = (byte)marker;
        Utf8Formatter.TryFormat(value, span[1..], out var written);
        span[1 + written] = (byte)'\r';
        span[2 + written] = (byte)'\n';
        output.Advance(written + 3);
    }

    private static void Line(IBufferWriter<byte> output, char marker, string text)
    {
        var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length) + 3);
        span[0] = (byte)marker;
        var written = Encoding.UTF8.GetBytes(text, span[1..]);
        span[1 + written] = (byte)'\r';
        span[2 + written] = (byte)'\n';
        output.Advance(written + 3);
    }

    /// <summary>One encoded reply, for a grain that answers with bytes.</summary>
    public static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>(16);
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }
}
