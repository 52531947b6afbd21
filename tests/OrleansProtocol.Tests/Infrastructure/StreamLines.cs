using System.Text;

namespace OrleansProtocol.Tests.Infrastructure;

public static class StreamLines
{
    /// <summary>Reads up to the next '\n' (not included), bounded by <see cref="TestTimeouts.Default"/> per byte.</summary>
    public static async Task<string> ReadLineAsync(this Stream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (await stream.ReadAsync(one).AsTask().WaitAsync(TestTimeouts.Default) == 1 && one[0] != '\n')
        {
            bytes.Add(one[0]);
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
