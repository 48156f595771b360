//! Makes a button reachable from the keyboard. iced 0.14's buttons and
//! checkboxes cannot take the focus, so Tab skipped them: a person without
//! a mouse could fill in the login form but not tick "Create account", and
//! could not reach a room in the sidebar. Wrapped in [`Reachable`], a
//! control takes its turn in the Tab order (the focus operations count it
//! like a text field), shows a ring while it has the focus, and Enter or
//! Space presses it.

use iced::advanced::layout::{self, Layout};
use iced::advanced::widget::operation::Focusable;
use iced::advanced::widget::{tree, Operation, Tree, Widget};
use iced::advanced::{mouse, overlay, renderer, Clipboard, Shell};
use iced::keyboard::{self, key::Named, Key};
use iced::widget::Button;
use iced::{Border, Color, Element, Event, Length, Rectangle, Size, Theme, Vector};

/// `content` (a button, a checkbox), pressed by Enter or Space with
/// `on_press` while it has the keyboard's focus. Without `on_press` (a
/// disabled control) it is left out of the Tab order.
pub fn reachable<'a, Message: Clone + 'a>(
    content: impl Into<Element<'a, Message>>,
    on_press: Option<Message>,
) -> Element<'a, Message> {
    match on_press {
        Some(on_press) => Element::new(Reachable {
            content: content.into(),
            on_press,
        }),
        None => content.into(),
    }
}

/// A button pressed by a click, or by Enter or Space once Tab reached it.
pub fn press<'a, Message: Clone + 'a>(
    button: Button<'a, Message>,
    message: Message,
) -> Element<'a, Message> {
    reachable(button.on_press(message.clone()), Some(message))
}

struct Reachable<'a, Message> {
    content: Element<'a, Message>,
    on_press: Message,
}

#[derive(Debug, Default)]
struct State {
    focused: bool,
}

impl Focusable for State {
    fn is_focused(&self) -> bool {
        self.focused
    }

    fn focus(&mut self) {
        self.focused = true;
    }

    fn unfocus(&mut self) {
        self.focused = false;
    }
}

impl<Message: Clone> Widget<Message, Theme, iced::Renderer> for Reachable<'_, Message> {
    fn size(&self) -> Size<Length> {
        self.content.as_widget().size()
    }

    fn size_hint(&self) -> Size<Length> {
        self.content.as_widget().size_hint()
    }

    fn layout(
        &mut self,
        tree: &mut Tree,
        renderer: &iced::Renderer,
        limits: &layout::Limits,
    ) -> layout::Node {
        self.content
            .as_widget_mut()
            .layout(&mut tree.children[0], renderer, limits)
    }

    fn draw(
        &self,
        tree: &Tree,
        renderer: &mut iced::Renderer,
        theme: &Theme,
        style: &renderer::Style,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
    ) {
        self.content.as_widget().draw(
            &tree.children[0],
            renderer,
            theme,
            style,
            layout,
            cursor,
            viewport,
        );
        if tree.state.downcast_ref::<State>().focused {
            use iced::advanced::Renderer as _;
            let ring = theme.extended_palette().primary.strong.color;
            renderer.fill_quad(
                renderer::Quad {
                    bounds: layout.bounds().expand(4.0),
                    border: Border {
                        color: ring,
                        width: 2.0,
                        radius: 7.0.into(),
                    },
                    ..renderer::Quad::default()
                },
                Color::TRANSPARENT,
            );
        }
    }

    fn tag(&self) -> tree::Tag {
        tree::Tag::of::<State>()
    }

    fn state(&self) -> tree::State {
        tree::State::new(State::default())
    }

    fn children(&self) -> Vec<Tree> {
        vec![Tree::new(&self.content)]
    }

    fn diff(&self, tree: &mut Tree) {
        tree.diff_children(std::slice::from_ref(&self.content));
    }

    fn operate(
        &mut self,
        tree: &mut Tree,
        layout: Layout<'_>,
        renderer: &iced::Renderer,
        operation: &mut dyn Operation,
    ) {
        operation.focusable(None, layout.bounds(), tree.state.downcast_mut::<State>());
        self.content
            .as_widget_mut()
            .operate(&mut tree.children[0], layout, renderer, operation);
    }

    fn update(
        &mut self,
        tree: &mut Tree,
        event: &Event,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        renderer: &iced::Renderer,
        clipboard: &mut dyn Clipboard,
        shell: &mut Shell<'_, Message>,
        viewport: &Rectangle,
    ) {
        let state = tree.state.downcast_mut::<State>();
        match event {
            Event::Keyboard(keyboard::Event::KeyPressed { key, .. }) if state.focused => {
                if matches!(key, Key::Named(Named::Enter | Named::Space)) {
                    shell.publish(self.on_press.clone());
                    shell.capture_event();
                    return;
                }
            }
            // The pointer took over, as a text field gives up its focus
            // to a click elsewhere: the ring is for the keyboard.
            Event::Mouse(mouse::Event::ButtonPressed(_)) if state.focused => {
                state.focused = false;
                shell.request_redraw();
            }
            _ => {}
        }
        self.content.as_widget_mut().update(
            &mut tree.children[0],
            event,
            layout,
            cursor,
            renderer,
            clipboard,
            shell,
            viewport,
        );
    }

    fn mouse_interaction(
        &self,
        tree: &Tree,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
        renderer: &iced::Renderer,
    ) -> mouse::Interaction {
        self.content.as_widget().mouse_interaction(
            &tree.children[0],
            layout,
            cursor,
            viewport,
            renderer,
        )
    }

    fn overlay<'b>(
        &'b mut self,
        tree: &'b mut Tree,
        layout: Layout<'b>,
        renderer: &iced::Renderer,
        viewport: &Rectangle,
        translation: Vector,
    ) -> Option<overlay::Element<'b, Message, Theme, iced::Renderer>> {
        self.content.as_widget_mut().overlay(
            &mut tree.children[0],
            layout,
            renderer,
            viewport,
            translation,
        )
    }
}

/// `content`, which a dialog may cover: while `covered`, nothing in it can
/// take the keyboard's focus (Tab stays in the dialog; a field that had
/// the cursor gives it up) and no key reaches it. Otherwise Tab walked out
/// of a dialog to the buttons behind its backdrop, and Enter pressed one
/// of them unseen. Always the same widget, covered or not, so what is
/// under keeps its state (scroll position, text) when a dialog comes.
pub fn coverable<'a, Message: 'a>(
    content: impl Into<Element<'a, Message>>,
    covered: bool,
) -> Element<'a, Message> {
    Element::new(Inert {
        content: content.into(),
        covered,
    })
}

struct Inert<'a, Message> {
    content: Element<'a, Message>,
    covered: bool,
}

/// Passes an operation on, except that focusable widgets are unfocused
/// and hidden from it.
struct Unreachable<'a>(&'a mut dyn Operation);

impl Operation for Unreachable<'_> {
    fn traverse(&mut self, operate: &mut dyn FnMut(&mut dyn Operation)) {
        self.0
            .traverse(&mut |inner| operate(&mut Unreachable(inner)));
    }

    fn container(&mut self, id: Option<&iced::widget::Id>, bounds: Rectangle) {
        self.0.container(id, bounds);
    }

    fn scrollable(
        &mut self,
        id: Option<&iced::widget::Id>,
        bounds: Rectangle,
        content_bounds: Rectangle,
        translation: Vector,
        state: &mut dyn iced::advanced::widget::operation::Scrollable,
    ) {
        self.0
            .scrollable(id, bounds, content_bounds, translation, state);
    }

    fn focusable(
        &mut self,
        _id: Option<&iced::widget::Id>,
        _bounds: Rectangle,
        state: &mut dyn Focusable,
    ) {
        state.unfocus();
    }

    fn text_input(
        &mut self,
        id: Option<&iced::widget::Id>,
        bounds: Rectangle,
        state: &mut dyn iced::advanced::widget::operation::TextInput,
    ) {
        self.0.text_input(id, bounds, state);
    }

    fn text(&mut self, id: Option<&iced::widget::Id>, bounds: Rectangle, text: &str) {
        self.0.text(id, bounds, text);
    }

    fn custom(
        &mut self,
        id: Option<&iced::widget::Id>,
        bounds: Rectangle,
        state: &mut dyn std::any::Any,
    ) {
        self.0.custom(id, bounds, state);
    }

    fn finish(&self) -> iced::advanced::widget::operation::Outcome<()> {
        self.0.finish()
    }
}

impl<Message> Widget<Message, Theme, iced::Renderer> for Inert<'_, Message> {
    fn size(&self) -> Size<Length> {
        self.content.as_widget().size()
    }

    fn size_hint(&self) -> Size<Length> {
        self.content.as_widget().size_hint()
    }

    fn layout(
        &mut self,
        tree: &mut Tree,
        renderer: &iced::Renderer,
        limits: &layout::Limits,
    ) -> layout::Node {
        self.content
            .as_widget_mut()
            .layout(&mut tree.children[0], renderer, limits)
    }

    fn draw(
        &self,
        tree: &Tree,
        renderer: &mut iced::Renderer,
        theme: &Theme,
        style: &renderer::Style,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
    ) {
        self.content.as_widget().draw(
            &tree.children[0],
            renderer,
            theme,
            style,
            layout,
            cursor,
            viewport,
        );
    }

    fn tag(&self) -> tree::Tag {
        tree::Tag::stateless()
    }

    fn children(&self) -> Vec<Tree> {
        vec![Tree::new(&self.content)]
    }

    fn diff(&self, tree: &mut Tree) {
        tree.diff_children(std::slice::from_ref(&self.content));
    }

    fn operate(
        &mut self,
        tree: &mut Tree,
        layout: Layout<'_>,
        renderer: &iced::Renderer,
        operation: &mut dyn Operation,
    ) {
        let tree = &mut tree.children[0];
        if self.covered {
            let operation = &mut Unreachable(operation);
            self.content
                .as_widget_mut()
                .operate(tree, layout, renderer, operation);
        } else {
            self.content
                .as_widget_mut()
                .operate(tree, layout, renderer, operation);
        }
    }

    fn update(
        &mut self,
        tree: &mut Tree,
        event: &Event,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        renderer: &iced::Renderer,
        clipboard: &mut dyn Clipboard,
        shell: &mut Shell<'_, Message>,
        viewport: &Rectangle,
    ) {
        if self.covered && matches!(event, Event::Keyboard(_)) {
            return;
        }
        self.content.as_widget_mut().update(
            &mut tree.children[0],
            event,
            layout,
            cursor,
            renderer,
            clipboard,
            shell,
            viewport,
        );
    }

    fn mouse_interaction(
        &self,
        tree: &Tree,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
        renderer: &iced::Renderer,
    ) -> mouse::Interaction {
        self.content.as_widget().mouse_interaction(
            &tree.children[0],
            layout,
            cursor,
            viewport,
            renderer,
        )
    }

    fn overlay<'b>(
        &'b mut self,
        tree: &'b mut Tree,
        layout: Layout<'b>,
        renderer: &iced::Renderer,
        viewport: &Rectangle,
        translation: Vector,
    ) -> Option<overlay::Element<'b, Message, Theme, iced::Renderer>> {
        if self.covered {
            return None;
        }
        self.content.as_widget_mut().overlay(
            &mut tree.children[0],
            layout,
            renderer,
            viewport,
            translation,
        )
    }
}

/// Moves the keyboard's focus to the next (or previous) focusable widget,
/// going round from the last to the first. iced's own step leaves nothing
/// focused after the last widget, an invisible stop in every lap of Tab
/// where Enter and Space did nothing.
pub fn focus_step<Message: Send + 'static>(forward: bool) -> iced::Task<Message> {
    use iced::advanced::widget::operation::{focusable::count, then};
    let task = if forward {
        iced::advanced::widget::operate(then(count(), next_of))
    } else {
        iced::advanced::widget::operate(then(count(), previous_of))
    };
    task.discard()
}

/// Focuses the focusable widget at `target` in tree order, and no other.
struct FocusAt {
    target: usize,
    current: usize,
}

impl Operation for FocusAt {
    fn focusable(
        &mut self,
        _id: Option<&iced::widget::Id>,
        _bounds: Rectangle,
        state: &mut dyn Focusable,
    ) {
        if self.current == self.target {
            state.focus();
        } else {
            state.unfocus();
        }
        self.current += 1;
    }

    fn traverse(&mut self, operate: &mut dyn FnMut(&mut dyn Operation)) {
        operate(self);
    }
}

fn next_of(count: iced::advanced::widget::operation::focusable::Count) -> FocusAt {
    let target = match count.focused {
        Some(at) if count.total > 0 => (at + 1) % count.total,
        _ => 0,
    };
    FocusAt { target, current: 0 }
}

fn previous_of(count: iced::advanced::widget::operation::focusable::Count) -> FocusAt {
    let target = match count.focused {
        Some(at) if at > 0 => at - 1,
        _ => count.total.saturating_sub(1),
    };
    FocusAt { target, current: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced::advanced::widget::operation::focusable::Count;

    #[test]
    fn tab_goes_round_from_the_last_to_the_first_and_back() {
        let count = |focused, total| Count { focused, total };
        assert_eq!(next_of(count(Some(2), 3)).target, 0);
        assert_eq!(next_of(count(Some(0), 3)).target, 1);
        assert_eq!(next_of(count(None, 3)).target, 0);
        assert_eq!(previous_of(count(Some(0), 3)).target, 2);
        assert_eq!(previous_of(count(None, 3)).target, 2);
        assert_eq!(previous_of(count(Some(2), 3)).target, 1);
        // One field alone keeps the focus.
        assert_eq!(next_of(count(Some(0), 1)).target, 0);
    }
}
