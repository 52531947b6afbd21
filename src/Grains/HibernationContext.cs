using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Orleans.Serialization;

namespace OrleansProtocol;

/// <summary>
/// A hibernating connection's state, as the migration participant writes it (<see cref="IDehydrationContext"/>), kept as
/// bytes by the gateway while the grain sleeps and read back when it wakes (<see cref="IRehydrationContext"/>). Each
/// value is serialized by Orleans' serializer, as a migration's are.
/// </summary>
internal sealed class HibernationContext(Serializer serializer) : IDehydrationContext, IRehydrationContext
{
    private Dictionary<string, byte[]> _values = [];

    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>The state as the gateway keeps it.</summary>
    public byte[] ToBytes() => serializer.SerializeToArray(_values);

    /// <summary>The state the gateway kept, to read back.</summary>
    public static HibernationContext FromBytes(Serializer serializer, byte[] state) =>
        new(serializer) { _values = serializer.Deserialize<Dictionary<string, byte[]>>(state) ?? [] };

    public void AddBytes(string key, ReadOnlySpan<byte> value) => _values[key] = value.ToArray();

    public void AddBytes<T>(string key, Action<T, IBufferWriter<byte>> valueWriter, T value)
    {
        var buffer = new ArrayBufferWriter<byte>();
        valueWriter(value, buffer);
        _values[key] = buffer.WrittenSpan.ToArray();
    }

    public bool TryAddValue<T>(string key, T? value) => _values.TryAdd(key, serializer.SerializeToArray(value));

    public bool TryGetBytes(string key, out ReadOnlySequence<byte> value)
    {
        var found = _values.TryGetValue(key, out var bytes);
        value = found ? new ReadOnlySequence<byte>(bytes!) : default;
        return found;
    }

    public bool TryGetValue<T>(string key, [NotNullWhen(true)] out T? value)
    {
        if (_values.TryGetValue(key, out var bytes) && serializer.Deserialize<T>(bytes) is { } read)
        {
            value = read;
            return true;
        }

        value = default;
        return false;
    }
}
