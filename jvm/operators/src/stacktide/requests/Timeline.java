package stacktide.requests;

import java.util.ArrayList;
import java.util.List;

/** One request's events ({@code jobs.requests.Timeline}): a set ordered by
 * {@code (at, messageId)}; a second event with a message id already there changes nothing. */
public final class Timeline {
    public final String key;
    public final List<Event> events = new ArrayList<>();

    public Timeline(String key) {
        this.key = key;
    }

    /** The index of the first event not before {@code (at, id)}. */
    public int position(long at, String id) {
        int lo = 0;
        int hi = events.size();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (events.get(mid).compareTo(at, id) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** Insert {@code e}; false when its message id is already there (a redelivery). */
    public boolean add(Event e) {
        int i = position(e.at, e.messageId);
        if (i < events.size() && events.get(i).messageId.equals(e.messageId)) {
            return false;
        }
        for (Event x : events) {
            if (x.messageId.equals(e.messageId)) {
                return false;  // same id, another time: the first one seen stands
            }
        }
        events.add(i, e);
        return true;
    }

    public long lastAt() {
        return events.get(events.size() - 1).at;
    }

    public List<Event> errors() {
        List<Event> out = new ArrayList<>();
        for (Event e : events) {
            if (e.fault != null) {
                out.add(e);
            }
        }
        return out;
    }
}
