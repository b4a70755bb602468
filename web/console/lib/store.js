/**
 * A small store: the console's state in one object, and subscribers told when a part of it changes. No framework:
 * views read `store.state`, change what they own, and call `set` (or `notify` after changing a part in place) so
 * that the views that show that part render again. Subscribers run synchronously, in the order they subscribed.
 */

export function createStore(initial) {
  const state = initial;
  const listeners = new Map(); // key -> Set of functions

  function notify(key) {
    for (const listener of [...(listeners.get(key) ?? [])]) listener(state[key], state);
  }

  return {
    state,
    /** Change some keys and tell their subscribers. */
    set(patch) {
      Object.assign(state, patch);
      for (const key of Object.keys(patch)) notify(key);
    },
    /** A part was changed in place (a list grew): tell its subscribers. */
    notify,
    /** Call `listener(value, state)` whenever `key` changes; returns the function that unsubscribes. */
    subscribe(key, listener) {
      if (!listeners.has(key)) listeners.set(key, new Set());
      listeners.get(key).add(listener);
      return () => listeners.get(key)?.delete(listener);
    },
  };
}
