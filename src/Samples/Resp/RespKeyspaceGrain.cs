using System.Buffers;
using Microsoft.Extensions.DependencyInjection;

namespace OrleansProtocol.Samples.Resp;

/// <summary>
/// Keys of the RESP sample: a grain per hash slot (or per key, see <see cref="RespOptions.KeySlots"/>), reachable from
/// every silo; keys outlive the connections that wrote them.
/// </summary>
[Alias("OrleansProtocol.Samples.Resp.IRespKeyspaceGrain")]
public interface IRespKeyspaceGrain : IGrainWithStringKey
{
    /// <summary>
    /// Runs single-key commands (SET, GET, DEL, EXISTS, INCRBY, EXPIRE, TTL; arity already checked) in order, and
    /// returns each one's encoded reply. One call carries every command of a pipelined burst for this grain.
    /// </summary>
    [Alias("Execute")]
    Task<byte[][]> Execute([Immutable] byte[][][] commands);
}

/// <summary>
/// Holds keys in memory, as Redis does without persistence; expiry runs on one grain timer set for the earliest
/// deadline (and a key past its deadline is treated as gone when read, as Redis does), never by scanning.
/// </summary>
/// <remarks>
/// Kept active while it holds keys (<see cref="KeepAliveAttribute"/>: idle collection would lose them); a grain per key
/// deactivates once its key is gone. A silo that fails loses the keys of the grains it held, as a Redis node without
/// replicas does.
/// </remarks>
[KeepAlive]
public sealed class RespKeyspaceGrain : Grain, IRespKeyspaceGrain
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly PriorityQueue<string, long> _deadlines = new();
    private TimeProvider? _time;
    private IGrainTimer? _timer;
    private long _timerDue = long.MaxValue;

    private TimeProvider Time => _time ??=
        ServiceProvider.GetKeyedService<TimeProvider>(TimeProviderNames.Grains) ?? ServiceProvider.GetService<TimeProvider>() ?? TimeProvider.System;

    private long Now => Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Keys held, expired ones not yet removed included (tests).</summary>
    internal int Count => _entries.Count;

    /// <inheritdoc />
    public Task<byte[][]> Execute(byte[][][] commands)
    {
        var replies = new byte[commands.Length][];
        var output = new ArrayBufferWriter<byte>(64);
        var now = Now;
        for (var i = 0; i < commands.Length; i++)
        {
            output.ResetWrittenCount();
            Run(commands[i], now, output);
            replies[i] = output.WrittenSpan.ToArray();
        }

        ArmTimer(now);
        if (_entries.Count == 0 && this.GetPrimaryKeyString().StartsWith(RespOptions.KeyGrainPrefix, StringComparison.Ordinal))
        {
            // A grain per key with no key left has nothing to keep.
            DeactivateOnIdle();
        }

        return Task.FromResult(replies);
    }

    private void Run(byte[][] command, long now, ArrayBufferWriter<byte> output)
    {
        var key = RespCommand.Key(command[1]);
        var entry = Find(key, now);
        switch (RespCommand.Name(command[0]))
        {
            case "GET":
                RespReply.Bulk(output, entry?.Value);
                break;
            case "SET":
                Set(command, key, entry, now, output);
                break;
            case "DEL":
                RespReply.Integer(output, entry is not null && _entries.Remove(key) ? 1 : 0);
                break;
            case "EXISTS":
                RespReply.Integer(output, entry is null ? 0 : 1);
                break;
            case "INCRBY":
                IncrBy(command, key, entry, output);
                break;
            case "EXPIRE":
                Expire(command, key, entry, now, output);
                break;
            case "TTL":
                RespReply.Integer(output, entry is null ? -2 : entry.ExpiresAt < 0 ? -1 : (entry.ExpiresAt - now + 500) / 1000);
                break;
            default:
                RespReply.Error(output, $"ERR unknown keyspace command '{RespCommand.Name(command[0])}'");
                break;
        }
    }

    private void Set(byte[][] command, string key, Entry? entry, long now, ArrayBufferWriter<byte> output)
    {
        long expiresAt = -1;
        bool nx = false, xx = false, keepTtl = false;
        for (var i = 3; i < command.Length; i++)
        {
            switch (RespCommand.Name(command[i]))
            {
                case "NX":
                    nx = true;
                    break;
                case "XX":
                    xx = true;
                    break;
                case "KEEPTTL":
                    keepTtl = true;
                    break;
                case var unit and ("EX" or "PX") when i + 1 < command.Length:
                    if (!RespCommand.TryInteger(command[++i], out var amount) || amount <= 0 || amount > long.MaxValue / 1000 / 2)
                    {
                        RespReply.Error(output, "ERR invalid expire time in 'set' command");
                        return;
                    }

                    expiresAt = now + (unit == "EX" ? amount * 1000 : amount);
                    break;
                default:
                    RespReply.Error(output, "ERR syntax error");
                    return;
            }
        }

        if ((nx && xx) || (keepTtl && expiresAt >= 0))
        {
            RespReply.Error(output, "ERR syntax error");
            return;
        }

        if ((nx && entry is not null) || (xx && entry is null))
        {
            RespReply.Raw(output, RespReply.Nil);
            return;
        }

        _entries[key] = new Entry(command[2], keepTtl && entry is not null ? entry.ExpiresAt : expiresAt);
        Deadline(key, _entries[key].ExpiresAt);
        RespReply.Raw(output, RespReply.Ok);
    }

    private void IncrBy(byte[][] command, string key, Entry? entry, ArrayBufferWriter<byte> output)
    {
        long current = 0;
        if (!RespCommand.TryInteger(command[2], out var by) || (entry is not null && !RespCommand.TryInteger(entry.Value, out current)))
        {
            RespReply.Error(output, RespReply.NotAnInteger);
            return;
        }

        if ((by > 0 && current > long.MaxValue - by) || (by < 0 && current < long.MinValue - by))
        {
            RespReply.Error(output, "ERR increment or decrement would overflow");
            return;
        }

        var value = current + by;
        _entries[key] = new Entry(System.Text.Encoding.ASCII.GetBytes(value.ToString(System.Globalization.CultureInfo.InvariantCulture)), entry?.ExpiresAt ?? -1);
        RespReply.Integer(output, value);
    }

    private void Expire(byte[][] command, string key, Entry? entry, long now, ArrayBufferWriter<byte> output)
    {
        if (!RespCommand.TryInteger(command[2], out var seconds) || seconds > long.MaxValue / 1000 / 2 || seconds < long.MinValue / 1000 / 2)
        {
            RespReply.Error(output, RespReply.NotAnInteger);
            return;
        }

        if (entry is null)
        {
            RespReply.Integer(output, 0);
            return;
        }

        if (seconds <= 0)
        {
            // A deadline already passed deletes the key, as Redis does.
            _entries.Remove(key);
        }
        else
        {
            entry.ExpiresAt = now + (seconds * 1000);
            Deadline(key, entry.ExpiresAt);
        }

        RespReply.Integer(output, 1);
    }

    /// <summary>The live entry for <paramref name="key"/>; one past its deadline is removed here, as Redis' lazy expiry.</summary>
    private Entry? Find(string key, long now)
    {
        if (!_entries.TryGetValue(key, out var entry))
        {
            return null;
        }

        if (entry.ExpiresAt >= 0 && entry.ExpiresAt <= now)
        {
            _entries.Remove(key);
            return null;
        }

        return entry;
    }

    private void Deadline(string key, long expiresAt)
    {
        if (expiresAt < 0)
        {
            return;
        }

        _deadlines.Enqueue(key, expiresAt);
        if (_deadlines.Count > 1024 + (2 * _entries.Count))
        {
            // Mostly stale (one key given a new deadline again and again): rebuilt from the live entries, so the queue
            // stays within twice the keys held.
            _deadlines.Clear();
            foreach (var (name, entry) in _entries)
            {
                if (entry.ExpiresAt >= 0)
                {
                    _deadlines.Enqueue(name, entry.ExpiresAt);
                }
            }
        }
    }

    /// <summary>Sets the timer for the earliest deadline, if it is not set for it already.</summary>
    private void ArmTimer(long now)
    {
        // Deadlines of keys since deleted, rewritten or given another deadline are stale: drop them from the front.
        while (_deadlines.TryPeek(out var key, out var due) && (!_entries.TryGetValue(key, out var entry) || entry.ExpiresAt != due))
        {
            _deadlines.Dequeue();
        }

        if (!_deadlines.TryPeek(out _, out var next) || next >= _timerDue)
        {
            return;
        }

        _timer?.Dispose();
        _timerDue = next;
        _timer = this.RegisterGrainTimer(static (grain, _) => grain.Expire(), this, new GrainTimerCreationOptions
        {
            DueTime = TimeSpan.FromMilliseconds(Math.Max(0, next - now)),
            Period = Timeout.InfiniteTimeSpan,
            KeepAlive = true,
        });
    }

    private Task Expire()
    {
        _timer?.Dispose();
        (_timer, _timerDue) = (null, long.MaxValue);
        var now = Now;
        while (_deadlines.TryPeek(out var key, out var due) && due <= now)
        {
            _deadlines.Dequeue();
            if (_entries.TryGetValue(key, out var entry) && entry.ExpiresAt == due)
            {
                _entries.Remove(key);
            }
        }

        ArmTimer(now);
        if (_entries.Count == 0 && this.GetPrimaryKeyString().StartsWith(RespOptions.KeyGrainPrefix, StringComparison.Ordinal))
        {
            DeactivateOnIdle();
        }

        return Task.CompletedTask;
    }

    private sealed class Entry(byte[] value, long expiresAt)
    {
        public byte[] Value { get; } = value;

        /// <summary>Unix milliseconds on the grain's clock; -1 for none.</summary>
        public long ExpiresAt { get; set; } = expiresAt;
    }
}
