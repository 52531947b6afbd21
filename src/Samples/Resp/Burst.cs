using System.Buffers;
using System.Buffers.Text;

namespace OrleansProtocol.Samples.Resp;

/// <summary>
/// The replies of a burst of pipelined commands, in command order: some known at once, some waiting on keyspace grains.
/// Key commands are grouped by grain, so a burst costs one call per grain it touches, made all at once.
/// </summary>
internal sealed class Burst(RespOptions options)
{
    /// <summary>How the replies of a command's per-key parts make its own reply.</summary>
    public enum Combine
    {
        /// <summary>One key: its reply.</summary>
        Single,

        /// <summary>DEL, EXISTS: the sum of the integers.</summary>
        Sum,

        /// <summary>MGET: an array of the replies.</summary>
        Array,

        /// <summary>MSET: OK, or the first error.</summary>
        Ok,
    }

    private readonly List<Part> _parts = [];

    // GetGrain resolves the interface's grain type through its attributes on every call: the references are kept.
    private const int MaxCachedGrains = 1024;
    private readonly Dictionary<string, IRespKeyspaceGrain> _grains = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(byte[][] Command, Part Part, int Index)>> _byGrain = new(StringComparer.Ordinal);

    public bool IsEmpty => _parts.Count == 0;

    /// <summary>A reply known now.</summary>
    public void Reply(Action<IBufferWriter<byte>> write) => _parts.Add(new Part { Fixed = RespReply.Encode(write) });

    /// <summary>A reply computed elsewhere (CLIENT LIST).</summary>
    public void Pending(Task<byte[]> reply) => _parts.Add(new Part { Later = reply });

    /// <summary>A single-key command.</summary>
    public void Key(byte[] key, byte[][] command) => Keys(Combine.Single, [(key, command)]);

    /// <summary>A command made of per-key commands, each sent to the grain holding its key.</summary>
    public void Keys(Combine combine, IEnumerable<(byte[] Key, byte[][] Command)> commands)
    {
        var list = commands.ToList();
        var part = new Part { Combine = combine, Replies = new byte[list.Count][] };
        _parts.Add(part);
        for (var i = 0; i < list.Count; i++)
        {
            var grain = options.GrainOf(list[i].Key);
            if (!_byGrain.TryGetValue(grain, out var queue))
            {
                _byGrain[grain] = queue = [];
            }

            queue.Add((list[i].Command, part, i));
        }
    }

    /// <summary>Sends each grain its commands, all grains at once; a grain that cannot be reached answers each with an error.</summary>
    public async Task RunAsync(IGrainFactory grains)
    {
        var calls = _byGrain.Select(async pair =>
        {
            byte[][] replies;
            try
            {
                if (!_grains.TryGetValue(pair.Key, out var grain))
                {
                    if (_grains.Count >= MaxCachedGrains)
                    {
                        // A grain per key: a connection touching many keys keeps only the latest references.
                        _grains.Clear();
                    }

                    _grains[pair.Key] = grain = grains.GetGrain<IRespKeyspaceGrain>(pair.Key);
                }

                replies = await grain.Execute([.. pair.Value.Select(c => c.Command)]);
            }
            catch (Exception ex)
            {
                var error = RespReply.Encode(o => RespReply.Error(o, $"ERR keyspace unavailable: {ex.GetType().Name}"));
                replies = [.. pair.Value.Select(_ => error)];
            }

            for (var i = 0; i < replies.Length; i++)
            {
                pair.Value[i].Part.Replies![pair.Value[i].Index] = replies[i];
            }
        }).ToList();
        calls.AddRange(_parts.Where(p => p.Later is not null).Select(p => (Task)p.Later!));
        await Task.WhenAll(calls);
    }

    /// <summary>Writes every reply in command order.</summary>
    public void WriteReplies(IBufferWriter<byte> output)
    {
        foreach (var part in _parts)
        {
            if (part.Fixed is { } fixedReply)
            {
                output.Write(fixedReply);
            }
            else if (part.Later is { } later)
            {
                output.Write(later.Result);
            }
            else
            {
                Write(part, output);
            }
        }
    }

    public void Clear()
    {
        _parts.Clear();
        _byGrain.Clear();
    }

    private static void Write(Part part, IBufferWriter<byte> output)
    {
        var replies = part.Replies!;
        switch (part.Combine)
        {
            case Combine.Single:
                output.Write(replies[0]);
                break;
            case Combine.Array:
                RespReply.ArrayHeader(output, replies.Length);
                foreach (var reply in replies)
                {
                    output.Write(reply);
                }

                break;
            case Combine.Sum or Combine.Ok when replies.FirstOrDefault(r => r[0] == (byte)'-') is { } error:
                output.Write(error);
                break;
            case Combine.Sum:
                long sum = 0;
                foreach (var reply in replies)
                {
                    Utf8Parser.TryParse(reply.AsSpan(1), out long value, out _);
                    sum += value;
                }

                RespReply.Integer(output, sum);
                break;
            case Combine.Ok:
                output.Write(RespReply.Ok);
                break;
        }
    }

    private sealed class Part
    {
        public byte[]? Fixed { get; init; }

        public Task<byte[]>? Later { get; init; }

        public Combine Combine { get; init; }

        public byte[][]? Replies { get; init; }
    }
}
