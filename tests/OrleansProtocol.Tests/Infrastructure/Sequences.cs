using System.Buffers;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>Multi-segment byte sequences, as a pipe hands out bytes that arrived in pieces.</summary>
public static class Sequences
{
    /// <summary>One segment per piece.</summary>
    public static ReadOnlySequence<byte> Of(IReadOnlyList<byte[]> pieces)
    {
        if (pieces.Count == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(pieces[0], 0);
        var last = first;
        foreach (var piece in pieces.Skip(1))
        {
            last = last.Append(piece);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary><paramref name="input"/> cut at up to three random places.</summary>
    public static ReadOnlySequence<byte> SplitAtRandom(Random random, byte[] input)
    {
        var cuts = Enumerable.Range(0, random.Next(0, 4)).Select(_ => random.Next(input.Length + 1))
            .Append(0).Append(input.Length).Distinct().Order().ToArray();
        return Of(cuts.Zip(cuts.Skip(1), (from, to) => input[from..to]).ToArray());
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex)
        {
            Memory = data;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] data)
        {
            var next = new Segment(data, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
