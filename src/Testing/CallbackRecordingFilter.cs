using OrleansProtocol.Wire;

namespace OrleansProtocol.Testing;

/// <summary>Records each call to an <see cref="IProtocolGrain"/> into the test host's <see cref="CallbackLog"/> as it arrives.</summary>
internal sealed class CallbackRecordingFilter(CallbackLog log) : IIncomingGrainCallFilter
{
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        ProtocolCallback? callback = null;
        if (context.InterfaceMethod?.DeclaringType == typeof(IProtocolGrain))
        {
            var name = context.InterfaceMethod.Name;
            var request = context.Request;
            ReadOnlyMemory<byte> data = default;
            var reason = ConnectionCloseReason.None;
            switch (name)
            {
                case nameof(IProtocolGrain.DataReceived):
                    data = (ReadOnlyMemory<byte>)request.GetArgument(0)!;
                    break;
                case nameof(IProtocolGrain.FramesReceived):
                    data = ((ReadOnlyMemory<byte>[])request.GetArgument(0)!).SelectMany(f => f.ToArray()).ToArray();
                    break;
                case nameof(IProtocolGrain.ConnectionLost):
                case nameof(IProtocolGrain.CloseRequested):
                    reason = (ConnectionCloseReason)request.GetArgument(0)!;
                    break;
            }

            callback = new ProtocolCallback(name, data.ToArray(), reason);
            log.Add(context.TargetId.Key.ToString()!, callback);
        }

        try
        {
            await context.Invoke();
        }
        finally
        {
            if (callback is not null)
            {
                callback.Handled = true;
                log.Changed();
            }
        }
    }
}
